"""Thumbnails of the triage page: downscaled JPEG data URIs, the strongest region's box drawn on them."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

from PIL import Image, ImageDraw

from riad_agent.errors import RiadError
from riad_agent.imaging import ImagePolicy, load_image
from riad_agent.triage_view import Box

#: Box colours by verdict (the page's badge colours).
BOX_COLOURS: dict[str, str] = {"anomalous": "#e0352b", "uncertain": "#f0a020"}


@dataclass(frozen=True)
class Thumbnail:
    """A thumbnail's data URI, or why there is none (the page shows a placeholder)."""

    uri: str | None = None
    problem: str | None = None


#: A box is drawn at least this many pixels wide and high, so a tiny region stays visible.
MIN_BOX_PX = 8


def _span(low: float, high: float, limit: int) -> tuple[float, float]:
    """``[low, high)`` widened about its centre to ``MIN_BOX_PX`` and kept inside ``[0, limit)``."""
    if high - low < MIN_BOX_PX:
        centre = (low + high) / 2
        low, high = centre - MIN_BOX_PX / 2, centre + MIN_BOX_PX / 2
    low = min(max(low, 0.0), max(limit - MIN_BOX_PX, 0.0))
    high = max(min(high, float(limit)), min(low + MIN_BOX_PX, float(limit)))
    return low, high - 1


def _scaled(box: Box, size: tuple[int, int], thumb: tuple[int, int]) -> tuple[float, float, float, float]:
    """``box`` (pixels of an image of ``size``) in the thumbnail's pixels, as an inclusive rectangle."""
    sx, sy = thumb[0] / max(size[0], 1), thumb[1] / max(size[1], 1)
    x0, x1 = _span(box[0] * sx, box[2] * sx, thumb[0])
    y0, y1 = _span(box[1] * sy, box[3] * sy, thumb[1])
    return x0, y0, x1, y1


def _draw_box(image: Image.Image, box: tuple[float, float, float, float], colour: str) -> None:
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    draw.rectangle((x0, y0, x1, y1), outline="#ffffff", width=3)  # a light rim keeps it visible on dark parts
    if x1 - x0 >= 2 and y1 - y0 >= 2:
        draw.rectangle((x0 + 1, y0 + 1, x1 - 1, y1 - 1), outline=colour, width=2)


def make_thumbnail(
    path: str,
    max_px: int,
    *,
    box: Box | None = None,
    size: tuple[int, int] | None = None,
    colour: str | None = None,
    quality: int = 72,
    policy: ImagePolicy | None = None,
) -> Thumbnail:
    """``path`` shrunk to at most ``max_px`` on its longest side, as a JPEG data URI; ``box`` (pixels
    of an image of ``size``, the decoded size when None) drawn in ``colour``. An image that cannot be
    read, or that ``policy`` (the settings' allowed roots and size limits) refuses, gives its error's
    message instead."""
    try:
        image = load_image(path, policy or ImagePolicy()).image
    except RiadError as exc:
        return Thumbnail(problem=exc.one_line())
    original = size or image.size
    image = image.convert("RGB")
    image.thumbnail((max_px, max_px), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if box is not None and colour is not None:
        _draw_box(image, _scaled(box, original, image.size), colour)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return Thumbnail(uri="data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))
