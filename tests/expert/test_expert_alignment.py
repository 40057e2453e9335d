"""Global pose alignment on the position features and the edge-aware (guided) upsampling of the map."""

from __future__ import annotations

import numpy as np
import torch

from riad_agent.expert.alignment import best_shift, cell_steps, grid_offsets, offset_costs, shift_positions
from riad_agent.expert.bank import nearest_distances
from riad_agent.expert.regions import guided_upsample, upsample_map


def _grid_with_positions(appearance: torch.Tensor, weight: float) -> torch.Tensor:
    rows, cols, _ = appearance.shape
    ys = torch.linspace(0, 1, rows).view(rows, 1, 1).expand(rows, cols, 1)
    xs = torch.linspace(0, 1, cols).view(1, cols, 1).expand(rows, cols, 1)
    return torch.cat([appearance, weight * ys, weight * xs], dim=-1)


def test_grid_offsets_start_at_zero_and_cover_the_square() -> None:
    offsets = grid_offsets(1)
    assert offsets[0] == (0, 0) and len(offsets) == 9 and len(set(offsets)) == 9
    assert grid_offsets(0) == [(0, 0)]


def test_offset_costs_match_brute_force_with_exclusion() -> None:
    generator = torch.Generator().manual_seed(0)
    queries, bank = torch.randn(13, 6, generator=generator), torch.randn(29, 6, generator=generator)
    owners = torch.arange(29) % 3
    shifts = [(0.0, 0.0), (0.5, -1.0), (-2.0, 0.25)]
    got = offset_costs(queries, bank, shifts, bank_chunk=7, skip=owners == 1)
    for index, shift in enumerate(shifts):
        expected = nearest_distances(shift_positions(queries, shift), bank, exclude=owners, exclude_owner=1)
        assert torch.allclose(got[index], expected.mean(), atol=1e-4)


def test_best_shift_registers_a_query_that_sits_one_cell_off() -> None:
    rows = cols = 12
    weight = 20.0
    generator = torch.Generator().manual_seed(1)
    reference = torch.randn(rows + 1, cols, 4, generator=generator)
    bank = _grid_with_positions(reference[:rows], weight).reshape(-1, 6)
    # the query's content is the reference moved one row up: its row r shows reference row r + 1
    query = _grid_with_positions(reference[1:], weight)
    steps = cell_steps((rows, cols), weight)
    shift = best_shift(query, bank, steps, reach=1, sample_stride=1)
    assert shift == (steps[0], 0.0)
    assert best_shift(query, bank, steps, reach=0) == (0.0, 0.0)
    aligned = nearest_distances(shift_positions(query, shift).reshape(-1, 6), bank)
    plain = nearest_distances(query.reshape(-1, 6), bank)
    assert aligned.mean() < plain.mean()


def test_guided_upsampling_keeps_the_score_on_the_object() -> None:
    size = 64
    guide = torch.zeros(3, size, size)
    guide[:, :, : size // 2] = 1.0  # bright left half, dark right half
    grid = np.zeros((8, 8), dtype=np.float32)
    grid[:, 3] = 1.0  # an anomalous column just left of the edge
    guided = guided_upsample(grid, guide, radius=8, eps=1e-3, subsample=2)
    blurred = upsample_map(grid, size, size, 4.0)
    assert guided.shape == (size, size) and guided.dtype == np.float32
    right = slice(size // 2 + 4, size // 2 + 12)
    assert guided[:, right].mean() < blurred[:, right].mean()
    assert np.isfinite(guided).all()
