"""The inspection graph with the real latent reasoner on a tiny random Qwen2-VL (fake expert/knowledge)."""

from __future__ import annotations

from pathlib import Path

import torch
from support.fakes import FakeExpert, FakeKnowledge
from support.tiny_models import build_tiny_qwen2_vl

from riad_agent.components import build_components
from riad_agent.inspector import Inspector
from riad_agent.reasoning import LatentConfig, LatentReasoner
from riad_agent.settings import Settings


async def test_graph_runs_the_latent_loop_with_expert_prior(tmp_path: Path, images: dict[str, Path]) -> None:
    torch.set_num_threads(1)
    reasoner = LatentReasoner(build_tiny_qwen2_vl("qwen2_vl"), LatentConfig(perturbations=4, patches=2))
    components = build_components(
        Settings(data_dir=tmp_path / "data"),
        knowledge=FakeKnowledge(),
        expert=FakeExpert(),
        reasoner=reasoner,
    )
    events: list[dict[str, object]] = []
    report = await Inspector(components=components).ainspect(
        {
            "image": str(images["bad"]),
            "category": "washer",
            "references": [str(images["ref0"])],
            "question": {"text": "Is there a defect?", "options": {"A": "Yes.", "B": "No."}},
            "options": {"latent_steps": 3, "seed": 7},
        },
        progress=events.append,
    )
    trace = report.trace
    assert trace is not None and trace.model_id == reasoner.model_id
    assert len(trace.iterations) >= 1 and report.answer in ("A", "B")
    assert abs(sum(trace.option_probabilities.values()) - 1.0) < 1e-4
    assert trace.final_reward >= trace.initial_reward  # the best state is kept
    assert [e for e in events if e.get("stage") == "latent_reasoning" and "reward" in e]
    assert report.models["reasoner"] == reasoner.model_id
    assert report.models["reasoner_precision"] == "float32"  # the precision it ran in
    assert {"reasoning.prefix_ms", "reasoning.latent_ms", "reasoning.decode_ms"} <= set(report.timings_ms)
