"""Dynamic visual injection: score the query image's merged patches and pick the top m.

Scores mix the latents' attention onto the query image (min-max normalised) with the vision
expert's prior map pooled to the model's merged patch grid.
"""

from __future__ import annotations

import numpy as np
import torch

from riad_agent.imaging import pool_to_grid
from riad_agent.models.base import VisualSpan
from riad_agent.schemas import PatchRef


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


def score_patches(attention: torch.Tensor, prior: torch.Tensor | None, prior_weight: float) -> torch.Tensor:
    """Per-patch score in [0, 1]: ``(1 - w) * minmax(attention) + w * prior``."""
    scores = _minmax(attention.detach().float().cpu())
    if prior is not None:
        scores = (1.0 - prior_weight) * scores + prior_weight * prior.float()
    return scores


def select_patches(scores: torch.Tensor, m: int) -> list[int]:
    """Indices of the m highest scores, best first (ties: lower index first)."""
    m = min(m, int(scores.numel()))
    order = sorted(range(int(scores.numel())), key=lambda i: (-float(scores[i]), i))
    return order[:m]


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
