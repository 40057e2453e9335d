"""From a patch-score grid to a pixel map, anomalous regions and a heatmap overlay PNG.

Pure numpy, scipy and Pillow: the colour map is a small piecewise-linear blue-cyan-yellow-red ramp.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from riad_agent.schemas import Region


def upsample_map(patch_scores: np.ndarray, height: int, width: int, sigma: float) -> np.ndarray:
    """Bilinearly upsample a (rows, cols) grid to (height, width) and Gaussian-smooth it (sigma in px)."""
    grid = torch.from_numpy(np.ascontiguousarray(patch_scores, dtype=np.float32))[None, None]
    full = F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()
    if sigma > 0:
        full = ndimage.gaussian_filter(full, sigma=sigma, mode="nearest")
    return full.astype(np.float32)


def find_regions(
    pixel_scores: np.ndarray,
    threshold: float,
    calibrate: Callable[[float], float],
    min_area: int = 16,
    max_regions: int = 10,
) -> list[Region]:
    """Connected components of ``pixel_scores > threshold`` as pixel boxes, strongest first.

    A region's score is the calibrated peak inside it; components smaller than ``min_area``
    pixels are dropped as speckle.
    """
    above = pixel_scores > threshold
    labels, count = ndimage.label(above)
    if count == 0:
        return []
    regions = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        inside = labels[box] == index
        area = int(inside.sum())
        if area < min_area:
            continue
        peak = float(pixel_scores[box][inside].max())
        regions.append(
            Region(
                x0=int(box[1].start),
                y0=int(box[0].start),
                x1=int(box[1].stop),
                y1=int(box[0].stop),
                score=float(min(1.0, max(0.0, calibrate(peak)))),
                area=area,
            )
        )
    regions.sort(key=lambda r: r.score, reverse=True)
    return regions[:max_regions]


_RAMP = np.array(
    [
        [0.0, 0, 0, 130],
        [0.25, 0, 110, 255],
        [0.5, 0, 230, 200],
        [0.7, 255, 230, 0],
        [1.0, 230, 20, 0],
    ],
    dtype=np.float64,
)


def colourise(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB uint8 with a blue-cyan-yellow-red ramp."""
    v = np.clip(values, 0.0, 1.0)
    channels = [np.interp(v, _RAMP[:, 0], _RAMP[:, c]) for c in (1, 2, 3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def heatmap_overlay(image: Image.Image, calibrated: np.ndarray, alpha: float = 0.45) -> bytes:
    """PNG bytes of the image with the calibrated map (0..1, image-sized) blended on top."""
    base = np.asarray(image.convert("RGB"), dtype=np.float64)
    colours = colourise(calibrated).astype(np.float64)
    weight = alpha * np.clip(calibrated, 0.15, 1.0)[..., None]
    blended = base * (1 - weight) + colours * weight
    buffer = io.BytesIO()
    Image.fromarray(blended.round().astype(np.uint8), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()
