"""Summary statistics of repeated timings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel


class StageTiming(BaseModel):
    """Milliseconds of one stage over the benchmark images."""

    n: int
    median_ms: float
    p95_ms: float
    min_ms: float
    max_ms: float


def summarise(samples_ms: Sequence[float]) -> StageTiming:
    """Median, 95th percentile (linear interpolation), min and max of a non-empty sample."""
    if not samples_ms:
        raise ValueError("no timings to summarise")
    values = np.asarray(samples_ms, dtype=np.float64)
    return StageTiming(
        n=int(values.size),
        median_ms=float(np.median(values)),
        p95_ms=float(np.percentile(values, 95)),
        min_ms=float(values.min()),
        max_ms=float(values.max()),
    )
