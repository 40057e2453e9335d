"""Dynamic visual injection: score the query image's merged patches and choose which to splice.

Why the expert's prior leads. The latents' attention onto the query image is mostly position and
sink attention: on the builtin model it peaks on the same top-row cells for a normal and a scratched
washer, and only a few percent of it reaches the image at all. Min-max scaling that attention and
adding the raw prior (the old ``"mixed"`` rule) let any attention peak beat the defect. So:

* attention is normalised *by rank within the image span* (``rank_normalise``): its scale carries
  no weight, only its order among the image's cells;
* ``"prior"`` (default): cells are ranked by the expert's pooled prior; attention only orders cells
  whose prior is (nearly) equal, e.g. the many normal cells when the prior is flat;
* ``"gated"``: ``prior * ((1 - w) * rank(attention) + w)``: attention reorders cells only within
  what the prior allows (a normal cell can never outrank a defect whose prior is >= 2x its own
  when ``w >= 0.5``);
* ``"mixed"``: the old ``(1 - w) * minmax(attention) + w * prior``, kept for measuring it.

Without a prior, or with ``prior_weight = 0`` (the ablation's "attention alone" row), every rule
ranks by attention. ``riad eval injection`` measures how often a kept patch lands on the defect.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

import numpy as np
import torch

from riad_agent.imaging import pool_to_grid
from riad_agent.models.base import VisualSpan
from riad_agent.schemas import PatchRef

Selection = Literal["prior", "gated", "mixed"]

#: In ``"prior"`` selection, how much rank-normalised attention may add to a cell's prior: enough to
#: order cells of equal prior, too little to lift a normal cell (prior ~0.2) over a defect (~0.5+).
ATTENTION_TIE_WEIGHT = 0.01


def pool_prior(prior: np.ndarray, rows: int, cols: int) -> torch.Tensor:
    """A [0, 1] prior grid of any shape, average-pooled to (rows x cols) and flattened row-major."""
    values = np.asarray(prior, dtype=np.float32)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"patch prior must be a non-empty 2-D grid, got shape {values.shape}")
    pooled = values if values.shape == (rows, cols) else pool_to_grid(values, rows, cols)
    return torch.from_numpy(np.clip(pooled, 0.0, 1.0).reshape(-1).copy())


def _minmax(values: torch.Tensor) -> torch.Tensor:
    span = values.max() - values.min()
    return (values - values.min()) / span if float(span) > 0 else torch.zeros_like(values)


def rank_normalise(values: torch.Tensor) -> torch.Tensor:
    """Each value's rank among ``values`` scaled to [0, 1] (highest = 1; ties share their mean rank)."""
    flat = values.detach().float().cpu().reshape(-1)
    count = int(flat.numel())
    if count < 2:
        return torch.ones_like(flat)
    uniques, inverse = torch.unique(flat, sorted=True, return_inverse=True)
    ordered = torch.sort(flat).values
    # mean rank of each distinct value: (first index + last index) / 2 in the sorted order
    first = torch.searchsorted(ordered, uniques, right=False).float()
    last = torch.searchsorted(ordered, uniques, right=True).float() - 1.0
    return ((first + last) / 2.0 / (count - 1))[inverse]


def score_patches(
    attention: torch.Tensor | None,
    prior: torch.Tensor | None,
    prior_weight: float,
    selection: Selection = "prior",
) -> torch.Tensor:
    """Per-patch score (higher = inject first) under ``selection`` (see the module docstring)."""
    if attention is None and prior is None:
        raise ValueError("scoring patches needs the latents' attention or the expert's prior")
    if prior is None or prior_weight == 0.0:
        assert attention is not None
        return rank_normalise(attention)
    prior = prior.float().cpu()
    if selection == "mixed":
        base = _minmax(attention.detach().float().cpu()) if attention is not None else torch.zeros_like(prior)
        return (1.0 - prior_weight) * base + prior_weight * prior
    ranks = rank_normalise(attention) if attention is not None else torch.zeros_like(prior)
    if selection == "gated":
        return prior * ((1.0 - prior_weight) * ranks + prior_weight)
    return prior + ATTENTION_TIE_WEIGHT * ranks


def select_patches(scores: torch.Tensor, m: int, exclude: Collection[int] = ()) -> list[int]:
    """Indices of the m highest scores not in ``exclude``, best first (ties: lower index first)."""
    order = sorted(
        (i for i in range(int(scores.numel())) if i not in exclude), key=lambda i: (-float(scores[i]), i)
    )
    return order[: max(0, m)]


def union_candidate(
    kept: list[int], scores: torch.Tensor, m: int, tried: Collection[int], cap: int
) -> list[int]:
    """The kept set united with the m best patches not tried yet, at most ``cap`` in all.

    Kept patches come first (in their order), the new ones after them, best first; an empty list
    when no untried patch is left or the cap leaves no room.
    """
    room = min(m, cap - len(kept))
    fresh = select_patches(scores, room, exclude=set(tried) | set(kept)) if room > 0 else []
    return [*kept, *fresh] if fresh else []


def patch_refs(span: VisualSpan, indices: list[int], scores: torch.Tensor | None) -> list[PatchRef]:
    """``PatchRef``s (grid cell, pixel box, score) for chosen patch indices of a span."""
    refs = []
    for index in indices:
        refs.append(
            PatchRef(
                index=index,
                row=index // span.cols,
                col=index % span.cols,
                box=span.boxes[index],
                score=float(scores[index]) if scores is not None else 0.0,
            )
        )
    return refs
