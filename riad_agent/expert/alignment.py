"""Global pose alignment of a query against the bank, done on the position features.

When the position features are on, each patch feature ends with its grid position ``(y, x)`` times
``position_weight``. A query whose whole part sits a cell or so off the references' pose then pays
a position penalty on every edge of the part, and those edges light up as defects. Shifting the
query's position columns by a whole-grid offset and keeping the offset with the lowest mean patch
distance registers the query to the references before scoring: the same offset for every patch, so
a missing or moved part (which no global shift explains) still scores high, unlike a per-patch
search window, which also forgives real defects. Phase correlation on the pixels cannot do this on
periodic backgrounds (a board's regular hole pattern); matching the patch features can.
"""

from __future__ import annotations

import itertools

import torch

POSITION_COLUMNS = 2


def grid_offsets(reach: int) -> list[tuple[int, int]]:
    """Every whole-cell offset ``(dy, dx)`` with ``|dy|, |dx| <= reach``, the zero offset first."""
    steps = range(-reach, reach + 1)
    offsets = [(dy, dx) for dy, dx in itertools.product(steps, steps) if (dy, dx) != (0, 0)]
    return [(0, 0), *offsets]


def cell_steps(grid: tuple[int, int], position_weight: float) -> tuple[float, float]:
    """Position-feature units per grid cell along y and x (positions are ``weight * linspace(0, 1, n)``)."""
    rows, cols = grid
    return position_weight / max(1, rows - 1), position_weight / max(1, cols - 1)


def shift_positions(features: torch.Tensor, shift: tuple[float, float]) -> torch.Tensor:
    """A copy of ``(..., D)`` features whose trailing ``(y, x)`` position columns are moved by ``shift``."""
    shifted = features.clone()
    shifted[..., -POSITION_COLUMNS] += shift[0]
    shifted[..., -1] += shift[1]
    return shifted


def offset_costs(
    queries: torch.Tensor,
    bank: torch.Tensor,
    shifts: list[tuple[float, float]],
    bank_chunk: int = 8192,
    skip: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean nearest-neighbour distance of ``queries`` (Q, D) to ``bank`` (N, D) for each position shift.

    The squared distance is computed once per bank chunk at zero shift; moving the query positions
    by ``s`` adds ``2 s . (p_query - p_bank) + |s|^2``, two cheap passes per shift. ``skip`` (N,)
    marks bank rows to ignore (leave-one-out). Returns (S,).
    """
    queries, bank = queries.float(), bank.float()
    best = torch.full((len(shifts), queries.shape[0]), float("inf"))
    for lo in range(0, bank.shape[0], bank_chunk):
        block = bank[lo : lo + bank_chunk]
        base = torch.cdist(queries, block).square()
        if skip is not None:
            base[:, skip[lo : lo + bank_chunk]] = float("inf")
        dy = queries[:, -POSITION_COLUMNS, None] - block[None, :, -POSITION_COLUMNS]
        dx = queries[:, -1, None] - block[None, :, -1]
        for index, (sy, sx) in enumerate(shifts):
            moved = torch.add(base, dy, alpha=2.0 * sy).add_(dx, alpha=2.0 * sx)
            nearest = moved.min(dim=1).values + (sy * sy + sx * sx)
            best[index] = torch.minimum(best[index], nearest)
    return best.clamp_min(0).sqrt().mean(dim=1)


def best_shift(
    grid_features: torch.Tensor,
    bank: torch.Tensor,
    steps: tuple[float, float],
    reach: int,
    sample_stride: int = 3,
    skip: torch.Tensor | None = None,
) -> tuple[float, float]:
    """The position shift (in feature units) that best registers a (rows, cols, D) query to the bank.

    Candidates are whole-cell offsets up to ``reach`` cells; they are ranked on every
    ``sample_stride``-th patch in each direction (the mean is stable, the search ~9x cheaper). Ties
    keep the zero offset.
    """
    if reach <= 0:
        return 0.0, 0.0
    shifts = [(dy * steps[0], dx * steps[1]) for dy, dx in grid_offsets(reach)]
    sample = grid_features[::sample_stride, ::sample_stride].reshape(-1, grid_features.shape[-1])
    costs = offset_costs(sample, bank, shifts, skip=skip)
    return shifts[int(torch.argmin(costs))]
