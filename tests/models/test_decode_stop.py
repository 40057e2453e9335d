"""A decode asks its caller's ``should_stop`` before each new token and ends there (issue 17)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from support.tiny_models import build_tiny_qwen2_vl, noise_image

from riad_agent.protocols import ReasoningInput
from riad_agent.reasoning import LatentConfig, LatentReasoner
from riad_agent.reasoning.latent_loop import LoopSetup, build_row
from riad_agent.schemas import MultipleChoiceQuestion

torch.set_num_threads(1)
QUESTION = MultipleChoiceQuestion(text="Is there any defect?", options={"A": "Yes.", "B": "No."})
MANY = 64


@pytest.fixture(scope="module")
def vlm() -> Any:
    model = build_tiny_qwen2_vl(seed=4)
    model.eos_token_ids = set()  # a random model may end early: here every decode runs to its limit
    return model


def _setups(vlm: Any, count: int) -> list[LoopSetup]:
    reasoner = LatentReasoner(vlm, LatentConfig())
    requests = [
        ReasoningInput(
            image=noise_image(40 + 8 * i, 48, seed=i),
            question=QUESTION,
            patch_prior=np.random.default_rng(i).random((8, 8)).astype(np.float32),
            latent_tokens=2,
            seed=i,
        )
        for i in range(count)
    ]
    return [reasoner.setup(request)[0] for request in requests]


def _stop_after(asked: int) -> Any:
    """A ``should_stop`` that says yes from its ``asked + 1``-th question on; counts the questions."""
    calls = [0]

    def should_stop() -> bool:
        calls[0] += 1
        return calls[0] > asked

    should_stop.calls = calls  # type: ignore[attr-defined]
    return should_stop


def test_a_stopped_decode_ends_at_the_next_token(vlm: Any) -> None:
    setup = _setups(vlm, 1)[0]
    row = build_row(setup, setup.latents, [])
    full_logits, full = vlm.generate(setup.prefix, row, MANY)
    stop = _stop_after(3)
    logits, produced = vlm.generate(setup.prefix, row, MANY, should_stop=stop)
    assert len(full) == MANY and produced == full[:3]
    assert stop.calls[0] == 4  # asked once per token, and never again after it said yes
    assert torch.equal(logits, full_logits)


def test_a_stopped_request_leaves_the_group_decode_and_the_other_goes_on(vlm: Any) -> None:
    setups = _setups(vlm, 2)
    rows = [build_row(s, s.latents, []) for s in setups]
    alone = [vlm.generate(s.prefix, row, MANY)[1] for s, row in zip(setups, rows, strict=True)]
    outputs = vlm.generate_batch([s.prefix for s in setups], rows, MANY, should_stop=[_stop_after(2), None])
    assert outputs[0][1] == alone[0][:2]
    assert outputs[1][1] == alone[1] and len(alone[1]) == MANY
