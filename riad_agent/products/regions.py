"""Where a labelled defect is: the bounding box of its mask, or the expert's strongest region."""

from __future__ import annotations

import numpy as np
from PIL import Image

from riad_agent.errors import InvalidImageError, InvalidRequestError
from riad_agent.expert.regions import strongest_region
from riad_agent.protocols import AnomalyMap

Box = tuple[int, int, int, int]


def mask_array(image: Image.Image) -> np.ndarray:
    """A decoded mask image as a boolean array (any channel above half-way is the defect)."""
    array = np.asarray(image.convert("L"), dtype=np.uint8)
    return array >= 128


def mask_box(
    mask: np.ndarray, image_size: tuple[int, int], stored_size: tuple[int, int]
) -> tuple[Box, np.ndarray]:
    """The defect's box in the stored image's pixels and the mask at that size.

    ``mask`` must have the image's size (``image_size`` is width x height) and mark some pixel.
    """
    if mask.ndim != 2:
        raise InvalidImageError(f"the mask must be a single 2-D image, got an array of shape {mask.shape}")
    height, width = mask.shape
    if (width, height) != tuple(image_size):
        raise InvalidImageError(
            f"the mask is {width}x{height} px but the image is {image_size[0]}x{image_size[1]} px; "
            "give the mask drawn on this image"
        )
    if not mask.any():
        raise InvalidRequestError("the mask marks no pixel (the defect must be white on black)")
    scaled = mask.astype(bool)
    if tuple(stored_size) != tuple(image_size):
        resized = Image.fromarray(scaled.astype(np.uint8) * 255).resize(stored_size, Image.Resampling.NEAREST)
        scaled = np.asarray(resized) >= 128
        if not scaled.any():  # a defect thinner than a pixel of the stored copy: keep its centre
            rows, cols = np.nonzero(mask)
            scaled = np.zeros((stored_size[1], stored_size[0]), dtype=bool)
            y = int(rows.mean() * stored_size[1] / height)
            x = int(cols.mean() * stored_size[0] / width)
            scaled[min(y, stored_size[1] - 1), min(x, stored_size[0] - 1)] = True
    rows, cols = np.nonzero(scaled)
    return (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1), scaled


def strongest_box(anomaly: AnomalyMap) -> Box:
    """The box of the expert's highest-scoring region, or of the map's peak blob when it found none."""
    if anomaly.regions:
        region = max(anomaly.regions, key=lambda r: (r.score, r.area))
    else:
        region = strongest_region(anomaly.pixel_scores, lambda _value: anomaly.score)
    return region.x0, region.y0, region.x1, region.y1
