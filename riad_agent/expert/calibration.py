"""Calibrated anomaly scores: 0.5 is the edge of normal for every category.

The raw score (a nearest-neighbour distance) is mapped through a logistic,
``sigmoid((raw - threshold) / scale)``. ``threshold`` and ``scale`` come from scores of *normal*
images that the bank did not see:

- two or more references: leave-one-out, each reference scored against a bank without its own
  patches;
- one reference: leave-one-out is impossible, so augmented views of the reference (small shifts,
  rotations and brightness changes) are scored against it, and the threshold is widened by
  ``single_reference_margin`` because such views are closer to the reference than a genuinely new
  normal part would be. This is a heuristic; with one reference the calibration is rough.

Threshold: ``max(mean + z * std, max of the normal scores)`` so that no held-out normal scores
above 0.5; scale: the normal scores' spread, floored at ``min_relative_scale`` of the threshold.

This rule (``ExpertConfig.calibration="max-z"``, :func:`fit_calibration`) is no longer the default:
with 2-4 references the held-out scores are few and noisy, and their ``max`` lets most defects
through. The default ``"relative"`` rule (:func:`relative_calibration`) puts the threshold at a
fixed factor of the *median* held-out score (2+ references) or at a raw threshold learned once for
the default features (one reference); the constants were chosen on generated products and MVTec
train splits (see ``docs/results.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """Logistic calibration of one raw score scale."""

    threshold: float
    scale: float
    method: str
    n_samples: int

    def __call__(self, raw: float) -> float:
        return calibrate(raw, self.threshold, self.scale)

    def array(self, raw: np.ndarray) -> np.ndarray:
        """Vectorised calibration of a map of raw scores."""
        z = np.clip((raw - self.threshold) / self.scale, -60, 60)
        return 1.0 / (1.0 + np.exp(-z))


def calibrate(raw: float, threshold: float, scale: float) -> float:
    """The logistic ``1 / (1 + exp(-(raw - threshold) / scale))``, in [0, 1]."""
    z = max(-60.0, min(60.0, (raw - threshold) / scale))
    return 1.0 / (1.0 + math.exp(-z))


def relative_calibration(
    threshold: float,
    image_scores: Sequence[float],
    pixel_peaks: Sequence[float],
    method: str,
    relative_scale: float,
) -> tuple[Calibration, Calibration]:
    """(image, pixel) calibrations for an image ``threshold``; both scales are ``relative_scale`` x threshold.

    The pixel threshold sits on the pixel map's scale, which peaks a little below the image score:
    the image threshold x median held-out pixel peak / median held-out image score.
    """
    level = float(np.median(image_scores))
    pixel_threshold = threshold * float(np.median(pixel_peaks)) / max(level, 1e-9)
    n = len(image_scores)
    return (
        Calibration(threshold, relative_scale * threshold, method, n),
        Calibration(pixel_threshold, relative_scale * pixel_threshold, method, n),
    )


def fit_calibration(
    normal_scores: Sequence[float],
    method: str,
    z: float = 2.0,
    margin: float = 1.0,
    min_relative_scale: float = 0.04,
) -> Calibration:
    """Threshold and scale from raw scores of held-out normal images (see the module docstring)."""
    scores = np.asarray(normal_scores, dtype=np.float64)
    if scores.size == 0 or not np.all(np.isfinite(scores)):
        raise ValueError("calibration needs at least one finite normal score")
    mean = float(scores.mean())
    std = float(scores.std(ddof=1)) if scores.size > 1 else 0.0
    threshold = max(mean + z * std, float(scores.max())) * margin
    scale = max(std, min_relative_scale * abs(threshold), 1e-6)
    return Calibration(threshold=threshold, scale=scale, method=method, n_samples=int(scores.size))
