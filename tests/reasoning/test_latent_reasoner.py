"""``LatentReasoner`` end to end on tiny random Qwen2-VL and Qwen2.5-VL models."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from support.tiny_models import build_tiny_qwen2_vl, noise_image

from riad_agent.errors import ImageTooLargeError, InvalidRequestError
from riad_agent.protocols import Reasoner, ReasoningInput
from riad_agent.reasoning import LatentConfig, LatentReasoner
from riad_agent.schemas import KnowledgeHit, MultipleChoiceQuestion, ReasoningTrace

torch.set_num_threads(1)
QUESTION = MultipleChoiceQuestion(
    text="Is there any defect in the object?", options={"A": "Yes.", "B": "No."}
)
HIT = KnowledgeHit(
    id="mvtec/hazelnut/crack",
    score=0.8,
    dataset="mvtec",
    category="hazelnut",
    kind="defect",
    defect_type="crack",
    title="Crack",
    text="A thin dark line across the shell.",
)


@pytest.mark.parametrize("variant", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_reason_returns_a_full_trace(variant: Any) -> None:
    vlm = build_tiny_qwen2_vl(variant, seed=5)
    reasoner = LatentReasoner(vlm, LatentConfig(patches=3, reward_threshold=1.0, plateau_patience=0))
    assert isinstance(reasoner, Reasoner)
    events: list[dict[str, object]] = []
    prior = np.zeros((8, 8), dtype=np.float32)
    prior[2, 5] = 1.0
    request = ReasoningInput(
        image=noise_image(64, 64, seed=1),
        question=QUESTION,
        knowledge=[HIT],
        templates=[noise_image(64, 64, seed=2)],
        patch_prior=prior,
        category="mvtec/hazelnut",
        latent_steps=5,
        seed=3,
    )
    result = reasoner.reason(request, progress=events.append)
    trace = result.trace
    assert isinstance(trace, ReasoningTrace)
    assert ReasoningTrace.model_validate_json(trace.model_dump_json()) == trace
    assert result.answer in ("A", "B")
    assert trace.model_id == f"tiny-{variant}" and trace.reward_kind == "entropy"
    assert len(trace.iterations) == 5 and [it.step for it in trace.iterations] == list(range(5))
    assert [e["iteration"] for e in events] == list(range(5))
    assert all(e["stage"] == "latent" and isinstance(e["reward"], float) for e in events)
    assert trace.final_reward >= trace.initial_reward
    assert trace.final_reward >= max(it.reward for it in trace.iterations) - 1e-9
    assert all(0.0 <= it.entropy <= 1.0 and it.sigma > 0 for it in trace.iterations)
    assert set(trace.option_probabilities) == {"A", "B"}
    for ref in trace.kept:
        assert 0 <= ref.row < 8 and 0 <= ref.col < 8 and ref.index == ref.row * 8 + ref.col
        x0, y0, x1, y1 = ref.box
        assert (x0, y0, x1, y1) == (ref.col * 8, ref.row * 8, ref.col * 8 + 8, ref.row * 8 + 8)
    assert {"prepare_ms", "prefix_ms", "latent_ms", "decode_ms", "total_ms"} <= set(result.timings_ms)


def test_zero_steps_and_no_injection() -> None:
    vlm = build_tiny_qwen2_vl("qwen2_vl", seed=6)
    reasoner = LatentReasoner(vlm, LatentConfig(latent_init="token", rationale_tokens=4))
    result = reasoner.reason(ReasoningInput(image=noise_image(), question=QUESTION, latent_steps=0))
    assert result.trace.iterations == [] and result.trace.kept == []
    assert result.trace.initial_reward == result.trace.final_reward
    off = reasoner.reason(
        ReasoningInput(image=noise_image(), question=QUESTION, latent_steps=3, inject_patches=False)
    )
    assert all(not it.tried for it in off.trace.iterations) and off.trace.kept == []


def test_gradient_optimiser_and_option_reward() -> None:
    vlm = build_tiny_qwen2_vl("qwen2_vl", seed=7)
    config = LatentConfig(
        optimiser="gradient",
        reward="option_confidence",
        reward_threshold=1.0,
        plateau_patience=0,
        rationale_tokens=4,
    )
    result = LatentReasoner(vlm, config).reason(
        ReasoningInput(image=noise_image(), question=QUESTION, latent_steps=3)
    )
    assert result.trace.reward_kind == "option_confidence"
    assert all(0.5 <= it.reward <= 1.0 for it in result.trace.iterations)  # top of two options
    assert all(it.sigma == 0.0 for it in result.trace.iterations)


def test_request_errors_are_typed() -> None:
    vlm = build_tiny_qwen2_vl("qwen2_vl", seed=8, max_image_pixels=64 * 64)
    reasoner = LatentReasoner(vlm)
    with pytest.raises(ImageTooLargeError):
        reasoner.reason(ReasoningInput(image=noise_image(65, 64), question=QUESTION))
    with pytest.raises(ImageTooLargeError):
        reasoner.reason(
            ReasoningInput(image=noise_image(), question=QUESTION, templates=[noise_image(80, 80)])
        )
    bad_prior: Any = np.zeros(5)
    with pytest.raises(InvalidRequestError):
        reasoner.reason(ReasoningInput(image=noise_image(), question=QUESTION, patch_prior=bad_prior))
