"""Patch selection follows the evidence; candidates change between rounds; the margin; trace names."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from support.tiny_models import build_tiny_qwen2_vl, noise_image

from riad_agent.protocols import ReasoningInput
from riad_agent.reasoning.config import LatentConfig
from riad_agent.reasoning.injection import rank_normalise, score_patches, select_patches, union_candidate
from riad_agent.reasoning.latent_loop import Scores, latent_loop_steps, run_latent_loop
from riad_agent.reasoning.reasoner import LatentReasoner
from riad_agent.schemas import IterationTrace, MultipleChoiceQuestion, ReasoningTrace

torch.set_num_threads(1)
QUESTION = MultipleChoiceQuestion(text="Is there any defect?", options={"A": "Yes.", "B": "No."})


@pytest.fixture(scope="module")
def vlm() -> Any:
    return build_tiny_qwen2_vl("qwen2_vl", seed=3)


def _evidence_case() -> tuple[torch.Tensor, torch.Tensor, int]:
    """As on the demo's washer: attention peaks on the top row, the prior (0.19 normal) on the defect."""
    attention = torch.full((36,), 0.010)
    attention[:6] = torch.tensor([0.060, 0.055, 0.050, 0.048, 0.045, 0.043])  # row-0 sink/position peaks
    prior = torch.full((36,), 0.19)
    defect = 32  # bottom row
    prior[defect] = 0.79
    prior[defect - 1] = 0.55
    return attention, prior, defect


@pytest.mark.parametrize("selection", ["prior", "gated"])
def test_prior_peak_is_chosen_when_attention_peaks_elsewhere(selection: Any) -> None:
    attention, prior, defect = _evidence_case()
    chosen = select_patches(score_patches(attention, prior, 0.5, selection), 4)
    assert chosen[:2] == [defect, defect - 1]
    # the old rule (min-max attention + raw prior) lets the attention peaks win
    old = select_patches(score_patches(attention, prior, 0.5, "mixed"), 4)
    assert defect not in old


def test_attention_is_normalised_by_rank_not_scale() -> None:
    attention = torch.tensor([0.2, 0.001, 0.5, 0.001])
    assert rank_normalise(attention).tolist() == pytest.approx([2 / 3, 1 / 6, 1.0, 1 / 6])
    attention, prior, _ = _evidence_case()
    flat = score_patches(attention * 1e-3 + 1.0, prior, 0.5, "gated")  # nearly flat: same ranks
    assert torch.equal(flat, score_patches(attention, prior, 0.5, "gated"))
    # without a prior (or weight 0) the ranks of attention alone decide
    assert select_patches(score_patches(attention, prior, 0.0), 2) == [0, 1]


def test_union_candidate_keeps_the_kept_set_and_adds_untried_patches() -> None:
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    assert union_candidate([4], scores, 2, tried={0, 4}, cap=8) == [4, 1, 2]
    assert union_candidate([4, 5], scores, 2, tried={0, 4}, cap=3) == [4, 5, 1]
    assert union_candidate([4, 5, 1], scores, 2, tried={0, 1, 4}, cap=3) == []  # no room left
    assert union_candidate([], scores, 2, tried=set(range(6)), cap=8) == []  # nothing untried


def _request(**kw: Any) -> ReasoningInput:
    base: dict[str, Any] = {"image": noise_image(48, 48, seed=7), "question": QUESTION}
    base.update(kw)
    return ReasoningInput(**base)


def test_candidate_set_changes_between_rounds(vlm: Any) -> None:
    config = LatentConfig(
        patches=2,
        injection_rounds=3,
        prior_weight=0.0,
        accept_margin=1.0,
        reward_threshold=1.0,
        plateau_patience=0,
    )
    setup, _ = LatentReasoner(vlm, config).setup(_request(latent_steps=4))
    result = run_latent_loop(vlm, setup, config)
    tried = [sorted(p.index for p in it.tried) for it in result.iterations if it.tried]
    assert len(tried) == 3  # one candidate per round, each a different set
    assert len({tuple(t) for t in tried}) == 3
    assert not any(it.accepted for it in result.iterations) and result.best.patches == []


def _drive_with_candidate_edge(vlm: Any, margin: float, edge: float) -> list[IterationTrace]:
    """Run two iterations with made-up rewards: the candidate row beats the current one by ``edge``."""
    config = LatentConfig(
        perturbations=2, patches=2, injection_rounds=1, prior_weight=0.0, accept_margin=margin
    )
    setup, _ = LatentReasoner(vlm, config).setup(_request(latent_steps=2))
    steps = latent_loop_steps(setup, config)
    evaluation = next(steps)
    span = setup.prefix.prompt.query_span.length
    try:
        while True:
            rows = len(evaluation.rows)
            rewards = torch.full((rows,), 0.5, dtype=torch.float32)
            if rows == 1 + config.perturbations + 1:  # the pending candidate is the last row
                rewards[-1] = 0.5 + edge
            attention = torch.linspace(0.0, 1.0, span) if evaluation.attend else None
            evaluation = steps.send(Scores(rewards, torch.zeros(rows), attention))
    except StopIteration as stop:
        return list(stop.value.iterations)


def test_margin_rejects_a_near_tie(vlm: Any) -> None:
    near = _drive_with_candidate_edge(vlm, margin=0.005, edge=0.001)
    assert near[1].tried and not near[1].accepted and near[1].kept == []
    clear = _drive_with_candidate_edge(vlm, margin=0.005, edge=0.02)
    assert clear[1].accepted and [p.index for p in clear[1].kept] == [p.index for p in clear[1].tried]
    no_margin = _drive_with_candidate_edge(vlm, margin=0.0, edge=0.001)
    assert no_margin[1].accepted


def test_row_starts_with_the_priors_patches(vlm: Any) -> None:
    config = LatentConfig(patches=2, reward_threshold=1.0, plateau_patience=0)
    prior = np.zeros((48, 48), dtype=np.float32)
    prior[0:8, 40:48] = 1.0  # top-right merged cell: index 5
    setup, _ = LatentReasoner(vlm, config).setup(_request(latent_steps=1, patch_prior=prior))
    result = run_latent_loop(vlm, setup, config)
    assert result.iterations[0].kept[0].index == 5
    none = config.model_copy(update={"initial_patches": "none"})
    setup, _ = LatentReasoner(vlm, none).setup(_request(latent_steps=1, patch_prior=prior))
    assert run_latent_loop(vlm, setup, none).iterations[0].kept == []


def test_trace_fields_tried_and_kept_read_old_json() -> None:
    ref = {"index": 3, "row": 0, "col": 3, "box": [24, 0, 32, 8], "score": 0.7}
    old = {
        "model_id": "m",
        "reward_kind": "entropy",
        "latent_tokens": 4,
        "initial_reward": 0.1,
        "final_reward": 0.2,
        "injected": [ref],
        "iterations": [
            {
                "step": 0,
                "reward": 0.1,
                "entropy": 0.9,
                "sigma": 0.1,
                "injected": [ref],
                "accepted": True,
                "elapsed_ms": 1.0,
            }
        ],
    }
    trace = ReasoningTrace.model_validate(old)
    assert [p.index for p in trace.kept] == [3] and [p.index for p in trace.iterations[0].tried] == [3]
    dumped = trace.model_dump(mode="json")
    assert "injected" not in dumped and "injected" not in dumped["iterations"][0]
    assert dumped["kept"][0]["index"] == 3 and dumped["iterations"][0]["tried"][0]["index"] == 3
    assert ReasoningTrace.model_validate_json(trace.model_dump_json()) == trace
    assert [p.index for p in trace.tried] == [3]
