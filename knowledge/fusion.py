"""Score fusion of ranked lists: distribution-based score fusion (DBSF) with per-list weights.

Each list's scores are rescaled by the window ``mean +- 3 std`` of that list (so cosine
similarities and BM25 scores become comparable), weighted and summed. Every list is first completed
to the union of ids: a missing id takes the list's ``fill`` score (0 for BM25, where absence means no
shared term) or, without one, the list's lowest score. Unlike reciprocal-rank fusion it keeps how far
ahead the best hit is.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import TypeVar

Key = TypeVar("Key", bound=Hashable)


def normalise(scores: Sequence[float]) -> list[float]:
    """Scores mapped through ``(s - (mu - 3 sd)) / (6 sd)`` (all 0.5 if flat).

    Not clipped: with skewed BM25 scores the best hits lie beyond ``mu + 3 sd`` and clipping would tie them.
    """
    if not scores:
        return []
    mean = sum(scores) / len(scores)
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    if sd == 0.0:
        return [0.5] * len(scores)
    low = mean - 3.0 * sd
    return [(s - low) / (6.0 * sd) for s in scores]


def dbsf(
    lists: Sequence[Sequence[tuple[Key, float]]],
    weights: Sequence[float],
    fills: Sequence[float | None] | None = None,
) -> list[tuple[Key, float]]:
    """Fuse ``[(key, score), ...]`` lists (best first) into one list, best first (ties: first seen)."""
    if len(lists) != len(weights) or (fills is not None and len(fills) != len(lists)):
        raise ValueError("one weight (and one fill) per list is needed")
    keys: dict[Key, None] = {}
    for items in lists:
        keys.update((key, None) for key, _ in items)
    fused = dict.fromkeys(keys, 0.0)
    for index, (items, weight) in enumerate(zip(lists, weights, strict=True)):
        if not items:
            continue
        scores = dict(items)
        fill = fills[index] if fills is not None else None
        missing = min(scores.values()) if fill is None else fill
        order = list(keys)
        values = normalise([scores.get(key, missing) for key in order])
        for key, value in zip(order, values, strict=True):
            fused[key] += weight * value
    return sorted(fused.items(), key=lambda kv: -kv[1])
