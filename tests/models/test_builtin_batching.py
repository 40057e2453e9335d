"""The builtin model answers batched requests (``reason_batch``) as it answers each alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from riad_agent.data.synthetic import generate_sample
from riad_agent.models.builtin.loading import load_builtin
from riad_agent.protocols import ReasoningInput, ReasoningResult
from riad_agent.reasoning import LatentReasoner
from riad_agent.reasoning.config import config_for
from riad_agent.schemas import MultipleChoiceQuestion
from riad_agent.settings import Settings

torch.set_num_threads(1)
DETECT = MultipleChoiceQuestion(text="Is there any defect in the object?", options={"A": "Yes.", "B": "No."})


@pytest.fixture(scope="module")
def builtin() -> Any:
    return load_builtin(cache_dir=Settings().model_cache_dir, device="cpu", dtype="float32")


def test_reason_batch_matches_each_request_alone(builtin: Any) -> None:
    reasoner = LatentReasoner(
        builtin, config_for(builtin, rationale_tokens=6, reward_threshold=1.0, plateau_patience=0)
    )
    requests = []
    for i, (category, defect) in enumerate([("washer", "scratch"), ("tile", None), ("fabric", "hole")]):
        image = generate_sample(f"synthetic/{category}", defect, seed=40 + i, size=96).image
        prior = np.random.default_rng(i).random((12, 12)).astype(np.float32) if i != 1 else None
        requests.append(
            ReasoningInput(image=image, question=DETECT, patch_prior=prior, latent_steps=2, seed=i)
        )
    alone = [reasoner.reason(request) for request in requests]
    grouped = reasoner.reason_batch(requests)
    for a, g in zip(alone, grouped, strict=True):
        assert isinstance(g, ReasoningResult), g
        assert g.answer == a.answer and g.text == a.text
        assert abs(g.trace.final_reward - a.trace.final_reward) < 1e-4
        assert [p.index for p in g.trace.kept] == [p.index for p in a.trace.kept]
        for letter, p in a.trace.option_probabilities.items():
            assert abs(g.trace.option_probabilities[letter] - p) < 1e-4
