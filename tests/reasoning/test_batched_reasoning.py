"""Cross-request batching: group forwards and ``reason_batch`` give what each request gets alone."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from support.tiny_models import build_tiny_llava, build_tiny_qwen2_vl, noise_image

from riad_agent.errors import ImageTooLargeError
from riad_agent.protocols import ReasoningInput, ReasoningResult
from riad_agent.reasoning.config import LatentConfig
from riad_agent.reasoning.latent_loop import LoopSetup, build_row
from riad_agent.reasoning.reasoner import LatentReasoner
from riad_agent.schemas import MultipleChoiceQuestion

torch.set_num_threads(1)
QUESTION = MultipleChoiceQuestion(
    text="Is there any defect?", options={"A": "Yes.", "B": "No.", "C": "Unsure."}
)
TOL = 1e-4


def _build(kind: str) -> Any:
    return build_tiny_llava(seed=5) if kind == "llava" else build_tiny_qwen2_vl(kind, seed=5)


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava"])
def vlm(request: pytest.FixtureRequest) -> Any:
    return _build(request.param)


def _requests(count: int = 3) -> list[ReasoningInput]:
    """Requests of different prompt lengths (sizes, templates), steps and seeds."""
    return [
        ReasoningInput(
            image=noise_image(40 + 8 * i, 48, seed=i),
            question=QUESTION,
            templates=[noise_image(48, 48, seed=20 + i)] * (i % 2),
            patch_prior=np.random.default_rng(i).random((8, 8)).astype(np.float32),
            latent_steps=2 + i,
            latent_tokens=2,
            seed=i,
        )
        for i in range(count)
    ]


def _setups(vlm: Any, requests: list[ReasoningInput]) -> list[LoopSetup]:
    reasoner = LatentReasoner(vlm, LatentConfig())
    return [reasoner.setup(request)[0] for request in requests]


def _assert_same(alone: ReasoningResult, grouped: ReasoningResult | Exception) -> None:
    assert isinstance(grouped, ReasoningResult), grouped
    assert grouped.answer == alone.answer and grouped.text == alone.text
    assert abs(grouped.trace.final_reward - alone.trace.final_reward) < TOL
    assert abs(grouped.trace.initial_reward - alone.trace.initial_reward) < TOL
    assert [p.index for p in grouped.trace.kept] == [p.index for p in alone.trace.kept]
    assert len(grouped.trace.iterations) == len(alone.trace.iterations)
    for a, g in zip(alone.trace.iterations, grouped.trace.iterations, strict=True):
        assert abs(a.reward - g.reward) < TOL and a.accepted == g.accepted
    for letter, p in alone.trace.option_probabilities.items():
        assert abs(grouped.trace.option_probabilities[letter] - p) < TOL


def test_group_suffix_forward_equals_each_alone(vlm: Any) -> None:
    setups = _setups(vlm, _requests())
    assert len({s.prefix.prompt.length for s in setups}) > 1, "prefixes of one length test no padding"
    n = int(setups[0].latents.shape[0])
    rows = [[build_row(s, s.latents, []), build_row(s, s.latents * 1.1, [0, 2, 3])] for s in setups]
    positions = [[[*range(n), int(r.shape[0]) - 1] for r in pair] for pair in rows]
    attend: list[list[list[int]] | None] = [[list(range(n)), []] for _ in rows]
    injected = [[(n, []), (n, [0, 2, 3])] for _ in rows]
    with torch.no_grad():
        alone = [
            vlm.suffix_forward(s.prefix, r, p, attend_from=a, injected=i)
            for s, r, p, a, i in zip(setups, rows, positions, attend, injected, strict=True)
        ]
        batched_prefixes = vlm.prefix_forward_batch([s.prefix.prompt for s in setups])
        for prefixes in ([s.prefix for s in setups], batched_prefixes):
            grouped = vlm.suffix_forward_batch(prefixes, rows, positions, attend, injected=injected)
            for a, g in zip(alone, grouped, strict=True):
                for x, y in zip(a.logits, g.logits, strict=True):
                    assert torch.allclose(x, y, atol=TOL)
                assert a.attention is not None and g.attention is not None
                assert torch.allclose(a.attention[0], g.attention[0], atol=1e-6)
    for s, prefix in zip(setups, batched_prefixes, strict=True):
        assert torch.allclose(s.prefix.last_logits, prefix.last_logits, atol=TOL)


def test_group_decode_equals_each_alone(vlm: Any) -> None:
    setups = _setups(vlm, _requests())
    n = int(setups[0].latents.shape[0])
    rows = [build_row(s, s.latents, [1] * i) for i, s in enumerate(setups)]  # rows of different lengths
    injected = [(n, [1] * i) for i in range(len(setups))]
    grouped = vlm.generate_batch([s.prefix for s in setups], rows, 8, injected)
    for s, row, inj, (logits, ids) in zip(setups, rows, injected, grouped, strict=True):
        alone_logits, alone_ids = vlm.generate(s.prefix, row, 8, inj)
        assert torch.allclose(alone_logits, logits, atol=TOL) and ids == alone_ids


@pytest.mark.parametrize("optimiser", ["reinforce", "gradient"])
def test_reason_batch_equals_reason_alone(vlm: Any, optimiser: str) -> None:
    reasoner = LatentReasoner(vlm, LatentConfig(optimiser=optimiser, patches=2))  # type: ignore[arg-type]
    requests = _requests()
    alone = [reasoner.reason(request) for request in requests]
    grouped = reasoner.reason_batch(requests)
    for a, g in zip(alone, grouped, strict=True):
        _assert_same(a, g)
        assert isinstance(g, ReasoningResult) and g.timings_ms["batch_size"] == len(requests)


def test_a_bad_image_or_a_cancelled_caller_ends_only_its_request(monkeypatch: pytest.MonkeyPatch) -> None:
    vlm = _build("qwen2_vl")
    reasoner = LatentReasoner(vlm, LatentConfig(patches=2))
    requests = _requests(4)
    alone = [reasoner.reason(request) for request in requests]
    monkeypatch.setattr(vlm, "max_image_pixels", 60 * 60)
    requests[1] = dataclasses.replace(requests[1], image=noise_image(64, 64, seed=1))

    def give_up(event: dict[str, object]) -> None:
        if event["iteration"] == 1:
            raise RuntimeError("the caller stopped waiting")

    grouped = reasoner.reason_batch(requests, [None, None, give_up, None])
    assert isinstance(grouped[1], ImageTooLargeError)
    assert isinstance(grouped[2], RuntimeError)
    _assert_same(alone[0], grouped[0])
    _assert_same(alone[3], grouped[3])
