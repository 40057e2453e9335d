"""Reward, injection scoring and answer parsing."""

from __future__ import annotations

import math

import numpy as np
import torch

from riad_agent.models.base import VisualSpan
from riad_agent.reasoning.decode import parse_letter
from riad_agent.reasoning.injection import patch_refs, pool_prior, score_patches, select_patches
from riad_agent.reasoning.reward import (
    entropy_reward,
    option_confidence_reward,
    option_probabilities,
    topk_entropy,
)


def test_topk_entropy_bounds_and_reward() -> None:
    uniform = torch.zeros(1, 50)
    peaked = torch.zeros(1, 50)
    peaked[0, 3] = 40.0
    assert math.isclose(float(topk_entropy(uniform, 10)[0]), 1.0, abs_tol=1e-6)
    assert float(topk_entropy(peaked, 10)[0]) < 1e-6
    # only the top-k tokens matter: a long flat tail does not change the value
    two = torch.full((1, 1000), -30.0)
    two[0, :2] = 0.0
    assert math.isclose(float(topk_entropy(two, 2)[0]), 1.0, abs_tol=1e-6)
    assert float(topk_entropy(two, 10)[0]) < 0.31
    latent_logits = torch.stack([torch.stack([uniform[0], peaked[0]])])  # 1 row x 2 positions
    assert math.isclose(float(entropy_reward(latent_logits, 10)[0]), 0.5, abs_tol=1e-6)


def test_option_probabilities_take_best_spelling() -> None:
    logits = torch.zeros(2, 10)
    logits[0, 4] = 5.0  # 'B' spelled by token 4 or 5
    logits[1, 1] = 2.0
    ids = {"A": [1], "B": [4, 5]}
    probs = option_probabilities(logits, ids)
    assert probs.shape == (2, 2)
    assert math.isclose(float(probs[0, 1]), 1 / (1 + math.exp(-5)), rel_tol=1e-5)
    conf = option_confidence_reward(logits, ids)
    assert float(conf[0]) > 0.99 and math.isclose(float(conf[1]), 1 / (1 + math.exp(-2)), rel_tol=1e-5)


def _span(rows: int = 3, cols: int = 4) -> VisualSpan:
    boxes = [(c * 10, r * 10, c * 10 + 10, r * 10 + 10) for r in range(rows) for c in range(cols)]
    return VisualSpan(0, rows * cols, rows, cols, boxes, torch.zeros(rows * cols, 8), "query")


def test_selection_follows_scores_and_prior_changes_it() -> None:
    attention = torch.tensor([0.1, 0.9, 0.3, 0.8, 0.0, 0.2, 0.7, 0.1, 0.0, 0.0, 0.0, 0.05])
    scores = score_patches(attention, None, 0.5)
    assert select_patches(scores, 3) == [1, 3, 6]
    prior_map = np.zeros((30, 40), dtype=np.float32)
    prior_map[20:30, 30:40] = 1.0  # bottom-right cell (row 2, col 3) = index 11
    prior = pool_prior(prior_map, 3, 4)
    assert prior.shape == (12,) and float(prior[11]) == 1.0 and float(prior.sum()) == 1.0
    mixed = score_patches(attention, prior, 0.6)
    chosen = select_patches(mixed, 3)
    assert chosen[0] == 11 and chosen != [1, 3, 6]
    refs = patch_refs(_span(), chosen, mixed)
    assert (refs[0].row, refs[0].col, refs[0].box) == (2, 3, (30, 20, 40, 30))
    assert refs[0].score == float(mixed[11])


def test_parse_letter() -> None:
    letters = ["A", "B", "C"]
    assert parse_letter("B. No, the surface is clean.", letters) == "B"
    assert parse_letter("Answer: (C)", letters) == "C"
    assert parse_letter("The answer is C", letters) == "C"
    assert parse_letter("A crack is visible", letters) == "A"
    assert parse_letter("Definitely none", letters) is None
    assert parse_letter("E", letters) is None
