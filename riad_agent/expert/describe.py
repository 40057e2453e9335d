"""What an anomalous region looks like, in plain words: size, shape, contrast, place on the part.

Pure numpy / scipy / PIL, no torch. :func:`part_mask` separates the part from a plain background
(or takes the whole image for a texture); :func:`describe_regions` reads each of the expert's regions
off its anomaly map and the query's pixels and returns a :class:`RegionDescription` whose
:meth:`~RegionDescription.sentence` is what a report says about the defect, e.g. "One region, 412 px
(1.8 % of the part), elongated, darker than the part around it, near the top-right edge of the part."

Each region's pixels are the map's values inside its box at or above a level relative to the region's
peak (half-way from the map's median to the peak by default), never below an optional absolute
threshold. A smooth map (an expert's patch map upsampled) is wider than a thin scratch, so there the
image refines it: within the map's blob, the pixels that are darker, brighter or of another colour
than a ring of ordinary part pixels around it (robust z > 3, pieces that run on into the ring
dropped as the part's own structure), or, failing those, thin lines and spots under 7 px across
(top-hat residuals), replace the map's core when they are between 5 % and 50 % of it. Shape: ``elongated``
when the pixels' principal axes are 3:1 or more apart or the region is at least 4 times as long as it
is thick (curved cracks), ``spread`` when they form several blobs that do not line up or fill less
than 30 % of their box, else ``compact``. Contrast compares the region's median CIE Lab colour with
that of the ring (or, with a ``reference`` of a fixed-pose part that lines up, with the same pixels
of that reference): ``darker`` / ``brighter`` when lightness moves most, ``colour shift`` when the
a*b* shift is 1.5 times larger, ``little contrast`` when neither passes the ring's own noise.
Position is relative to the part's mask and its bounding box, not the image. Images over 512 px are
described on a copy reduced by a whole factor. Thresholds are the module's constants below; the
figures they give on generated defects are printed by ``benchmarks/describe_check.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image
from scipy import ndimage

from riad_agent.schemas import ColourShift as Hue
from riad_agent.schemas import DescribedRegion, Region, RegionDescription
from riad_agent.schemas import RegionContrast as Contrast
from riad_agent.schemas import RegionPosition as Position
from riad_agent.schemas import RegionShape as Shape

#: Images larger than this (longest side) are described on a copy reduced by a whole factor to at
#: most this size; pixel counts are scaled back.
WORK_SIDE = 512
#: The part mask is found on a copy whose longest side is at most this many pixels.
PART_SIDE = 128
#: A "part" covering more of the image than this is a texture: the whole image is the part.
TEXTURE_COVER = 0.9
#: A "part" covering less than this is noise on a plain image: the whole image is the part.
MIN_PART_COVER = 0.005
#: The border's colour spread (75th percentile of the distance from its median colour, RGB 0..255)
#: above which it is no plain background.
PLAIN_BORDER = 15.0
#: Border pixels that must be background (in border-touching background pieces that each hold at
#: least ``_MIN_BORDER_SHARE`` of the border) for the image to count as a part on a background.
BORDER_BACKGROUND = 0.85
_MIN_BORDER_SHARE = 0.2
#: Elongation thresholds: principal-axis ratio, and length over thickness (for curved lines).
AXIS_RATIO_ELONGATED = 3.0
LENGTH_OVER_WIDTH_ELONGATED = 4.0
#: Below this fill of its box (and not elongated) a region is "spread".
SPREAD_FILL = 0.3
#: A region is at an edge when at least ``EDGE_TOUCH`` of its pixels lie within ``EDGE_MARGIN`` pixels of
#: the part mask (at most ``PART_SIDE`` px a side) from the part's boundary, or its pixels lie on
#: average within ``EDGE_FRACTION`` of the part's half-thickness from it.
EDGE_TOUCH = 0.05
EDGE_MARGIN = 1.5
EDGE_FRACTION = 0.2
#: Lab differences (L* or a*b* distance) below this never count as contrast.
MIN_CONTRAST = 4.0
#: A colour shift needs an a*b* distance of at least this and ``COLOUR_OVER_LIGHTNESS`` times the
#: lightness change (a whitish scratch on red tile is "brighter", not a colour shift).
MIN_COLOUR_SHIFT = 8.0
COLOUR_OVER_LIGHTNESS = 1.5
#: A map is smooth (and refined) when its blob at half the level has this many times its core's pixels.
SMOOTH_MAP = 1.3
#: Refinement: a pixel of the map's blob "differs" when its robust z against the ring (L* or a*b*)
#: is over ``DIFFERS_Z``; the differing pixels replace the map's core when they number between
#: ``REFINED_MIN_SHARE`` and ``REFINED_MAX_SHARE`` of it.
DIFFERS_Z = 3.0
REFINED_MIN_SHARE = 0.05
REFINED_MAX_SHARE = 0.5
#: Thin lines and small spots: a pixel's top-hat residual (what an opening or closing with a
#: ``FINE_SIZE`` px square removes), over ``FINE_Z`` robust spreads of the same on the ring.
FINE_SIZE = 7
FINE_Z = 4.0
#: A reference is used only when it lines up with the query: over the whole image (grey, 64 px),
#: the mean absolute difference from the median difference is at most ``REFERENCE_MISALIGNED_IMAGE``
#: (a 10 px shift of a 256 px part gives about 6, a 30 px one 12 or more), and on the ring around the
#: region the median absolute deviation of the L* difference is at most ``REFERENCE_MISALIGNED``.
#: Otherwise the comparison falls back to the ring around the region.
REFERENCE_MISALIGNED_IMAGE = 9.0
REFERENCE_MISALIGNED = 8.0


# --------------------------------------------------------------------------------------------------
# the part


@dataclass(frozen=True)
class _Part:
    """The part's mask on a reduced copy (``factor`` image pixels per mask pixel)."""

    small: np.ndarray  # bool, ceil(H / factor) x ceil(W / factor)
    factor: int
    whole: bool
    size: tuple[int, int]  # the image's (width, height)

    def full(self) -> np.ndarray:
        if self.factor == 1:
            return self.small.copy()
        width, height = self.size
        grown = np.repeat(np.repeat(self.small, self.factor, axis=0), self.factor, axis=1)
        return np.ascontiguousarray(grown[:height, :width])


def _factor(width: int, height: int) -> int:
    return max(1, math.ceil(max(width, height) / PART_SIDE))


def _reduce_mask(mask: np.ndarray) -> np.ndarray:
    """A full-size mask on the part's reduced grid: a cell is in when at least half of it is."""
    height, width = mask.shape
    factor = _factor(width, height)
    if factor == 1:
        return mask.copy()
    rows, cols = math.ceil(height / factor), math.ceil(width / factor)
    padded = np.zeros((rows * factor, cols * factor), dtype=np.float32)
    padded[:height, :width] = mask
    return padded.reshape(rows, factor, cols, factor).mean(axis=(1, 3)) >= 0.5


def _find_part(image: Image.Image) -> _Part:
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    factor = _factor(width, height)
    small_image = rgb.reduce(factor) if factor > 1 else rgb
    pixels = np.asarray(small_image, dtype=np.float32)
    rows, cols = pixels.shape[:2]
    whole = _Part(np.ones((rows, cols), dtype=bool), factor, True, (width, height))
    if rows < 8 or cols < 8:
        return whole
    strip = max(1, min(rows, cols) // 64)
    border = np.zeros((rows, cols), dtype=bool)
    border[:strip], border[-strip:], border[:, :strip], border[:, -strip:] = True, True, True, True
    background = np.median(pixels[border], axis=0)
    distance = np.sqrt(((pixels - background) ** 2).sum(axis=-1))
    noise = float(np.percentile(distance[border], 75))
    if noise > PLAIN_BORDER:
        return whole  # no plain background around the image: a texture, or a textured backdrop
    threshold = max(3.0 * noise, 12.0)
    candidate = ndimage.binary_opening(distance > threshold, iterations=1)
    # the background: border-touching pieces that each hold a fair share of the border
    labels, count = ndimage.label(~candidate)
    if count == 0:
        return whole
    on_border = np.bincount(labels[border], minlength=count + 1)
    on_border[0] = 0
    share = on_border / max(int(border.sum()), 1)
    keep = share >= _MIN_BORDER_SHARE
    if float(share[keep].sum()) < BORDER_BACKGROUND:
        return whole  # the border is not one plain background: a texture, or a part filling the frame
    # inner openings (a washer's hole) stay out of the part: they look like the background
    part = ndimage.binary_closing(candidate, iterations=1) | candidate
    part_labels, part_count = ndimage.label(part)
    if part_count > 1:
        sizes = np.bincount(part_labels.ravel())
        sizes[0] = 0
        part = sizes[part_labels] >= 0.05 * sizes.max()
    cover = float(part.mean())
    if cover > TEXTURE_COVER or cover < MIN_PART_COVER:
        return whole
    return _Part(part, factor, False, (width, height))


def part_mask(image: Image.Image) -> np.ndarray:
    """The part (True) against a plain background, at the image's size; all True for a texture.

    The background is the median colour of the image's border; pixels far from it (Otsu's threshold
    on the colour distance, at least twice the border's own spread) are the part, opened to drop
    speckle, with small pieces dropped. The whole image is the part when the border is not one plain
    background, or the "part" covers over 90 % (or under 0.5 %) of the image.
    """
    return _find_part(image).full()


# --------------------------------------------------------------------------------------------------
# colour


_SRGB = np.arange(256, dtype=np.float64) / 255.0
#: sRGB 0..255 to linear light, as a table (the pixels are 8-bit).
_LINEAR = np.where(_SRGB <= 0.04045, _SRGB / 12.92, ((_SRGB + 0.055) / 1.055) ** 2.4).astype(np.float32)
#: linear RGB to XYZ (D65), each column divided by the white point's X, Y, Z.
_TO_XYZ = (
    np.array(
        [
            [0.4124564, 0.2126729, 0.0193339],
            [0.3575761, 0.7151522, 0.1191920],
            [0.1804375, 0.0721750, 0.9503041],
        ]
    )
    / np.array([0.95047, 1.0, 1.08883])
).astype(np.float32)


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB 0..255 (N x 3, uint8) to CIE Lab (D65), N x 3."""
    xyz = _LINEAR[np.asarray(rgb, dtype=np.uint8)] @ _TO_XYZ
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=-1)


def _hue(region_ab: np.ndarray, other_ab: np.ndarray) -> Hue:
    """Which way the colour moved: towards grey when it mostly lost saturation, else the main a*b* axis."""
    delta = region_ab - other_ab
    chroma_region, chroma_other = float(np.hypot(*region_ab)), float(np.hypot(*other_ab))
    if chroma_region < chroma_other and chroma_other - chroma_region >= 0.7 * float(np.hypot(*delta)):
        return "grey"
    delta_a, delta_b = float(delta[0]), float(delta[1])
    if abs(delta_a) >= abs(delta_b):
        return "red" if delta_a > 0 else "green"
    return "yellow" if delta_b > 0 else "blue"


def _judge_contrast(
    region_lab: np.ndarray, other_lab: np.ndarray, noise: float
) -> tuple[Contrast, float, float, Hue | None]:
    """Contrast label, L* difference, a*b* distance and hue shift of a region against its comparison."""
    region_median = np.median(region_lab, axis=0)
    other_median = np.median(other_lab, axis=0)
    delta = region_median - other_median
    lightness = float(delta[0])
    colour = float(np.hypot(delta[1], delta[2]))
    floor = max(MIN_CONTRAST, noise)
    if colour >= max(MIN_COLOUR_SHIFT, floor) and colour > COLOUR_OVER_LIGHTNESS * abs(lightness):
        hue = _hue(region_median[1:], other_median[1:])
        # losing colour while turning much darker or brighter (a black hole in red print) is that
        if hue != "grey" or abs(lightness) < floor:
            return "colour shift", lightness, colour, hue
    if abs(lightness) >= floor:
        return ("darker" if lightness < 0 else "brighter"), lightness, colour, None
    return "little contrast", lightness, colour, None


def _mad(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values)))) if values.size else 0.0


# --------------------------------------------------------------------------------------------------
# regions


def _thin(piece: np.ndarray) -> bool:
    """Whether one blob is a line: long for its thickness or with far-apart principal axes."""
    ys, xs = np.nonzero(piece)
    if len(xs) < 3:
        return False
    low, high = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(np.float64)) + np.eye(2) / 12.0)
    width = max(1.0, 2.0 * float(ndimage.distance_transform_edt(np.pad(piece, 1)).max()) - 1.0)
    return high >= AXIS_RATIO_ELONGATED**2 * low or len(xs) / width**2 >= LENGTH_OVER_WIDTH_ELONGATED


def _shape(pixels: np.ndarray) -> tuple[Shape, int, float, float, float]:
    """Shape label, blobs, axis ratio, length over width and fill of a boolean crop."""
    labels, count = ndimage.label(pixels, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel())[1:] if count else np.zeros(0, dtype=np.int64)
    blobs = max(1, int((sizes >= max(3, 0.1 * (sizes.max() if sizes.size else 0))).sum()))
    ys, xs = np.nonzero(pixels)
    area = len(xs)
    if area < 3:
        return "compact", blobs, 1.0, 1.0, 1.0
    cov = np.cov(np.stack([xs, ys]).astype(np.float64)) + np.eye(2) / 12.0
    low, high = np.linalg.eigvalsh(cov)
    axis_ratio = float(math.sqrt(max(high, 1e-9) / max(low, 1e-9)))
    # thickness from the largest blob's distance transform: a line of width w gives about (w + 1) / 2
    largest = labels == (1 + int(np.argmax(sizes))) if count else pixels
    inner = ndimage.distance_transform_edt(np.pad(largest, 1))
    width = max(1.0, 2.0 * float(inner.max()) - 1.0)
    length_over_width = float(largest.sum()) / width**2
    fill = area / float((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))
    elongated = axis_ratio >= AXIS_RATIO_ELONGATED or length_over_width >= LENGTH_OVER_WIDTH_ELONGATED
    if blobs > 1:
        # pieces of one line (a scratch cut by a hole in the part) are still a line
        pieces = [labels == 1 + i for i in np.nonzero(sizes >= max(3, 0.1 * sizes.max()))[0]]
        lined_up = axis_ratio >= AXIS_RATIO_ELONGATED or all(_thin(piece) for piece in pieces)
        label: Shape = "elongated" if lined_up else "spread"
    elif elongated:
        label = "elongated"
    elif fill < SPREAD_FILL:
        label = "spread"
    else:
        label = "compact"
    return label, blobs, axis_ratio, length_over_width, fill


def _inner_distances(mask: np.ndarray) -> np.ndarray:
    """Distance of each pixel of ``mask`` to the nearest pixel outside it or outside the image.

    The mean of the chessboard and taxicab distances: within 8 % of the Euclidean one, and some ten
    times faster to compute than it.
    """
    padded = np.pad(mask, 1)
    chess = ndimage.distance_transform_cdt(padded, metric="chessboard")
    taxi = ndimage.distance_transform_cdt(padded, metric="taxicab")
    return np.asarray(0.5 * (chess + taxi)[1:-1, 1:-1], dtype=np.float64)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background piece that does not touch the image's border filled."""
    labels, count = ndimage.label(~mask)
    if count == 0:
        return mask
    outside = np.zeros(count + 1, dtype=bool)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        outside[edge] = True
    outside[0] = False
    return mask | ~outside[labels] & (labels > 0)


def _at_boundary(distances: np.ndarray, half_thickness: float) -> bool:
    """Whether pixels at these distances from the boundary touch it or lie close to it on average."""
    touching = float((distances <= EDGE_MARGIN).mean())
    return touching >= EDGE_TOUCH or float(distances.mean()) <= EDGE_FRACTION * half_thickness


def _side(rel_x: float, rel_y: float) -> str | None:
    vertical = "top" if rel_y < 1 / 3 else "bottom" if rel_y > 2 / 3 else ""
    horizontal = "left" if rel_x < 1 / 3 else "right" if rel_x > 2 / 3 else ""
    return " ".join(w for w in (vertical, horizontal) if w) or None


@dataclass(frozen=True)
class _Measured:
    """One region's pixels (image coordinates) and the colours its contrast is judged on."""

    ys: np.ndarray
    xs: np.ndarray
    region_lab: np.ndarray
    other_lab: np.ndarray
    noise: float
    compared: Literal["surroundings", "reference"]


def _box(region: Region, height: int, width: int) -> tuple[int, int, int, int]:
    x0, y0 = min(max(region.x0, 0), width - 1), min(max(region.y0, 0), height - 1)
    return x0, y0, max(min(region.x1, width), x0 + 1), max(min(region.y1, height), y0 + 1)


def _unlike_ring(mask: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """``mask`` without specks (under 3 px) and without pieces that reach into the ring.

    What differs inside the region and goes on outside it (grout lines, a printed band, holes of the
    part) is the part's own structure, not the defect.
    """
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= 3
    keep[np.unique(labels[ring])] = False
    keep[0] = False
    return np.asarray(keep[labels])


def _luma(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114, dtype=np.float32)


def _fine_differences(
    rgb: np.ndarray, ref_rgb: np.ndarray | None, window: tuple[int, int, int, int], ring: np.ndarray
) -> np.ndarray:
    """Pixels of a window whose brightness stands out from their neighbourhood (or the reference).

    Without a reference: the top-hat residuals of a ``FINE_SIZE`` px square (bright minus dark), which
    keep step edges and broad shapes out but not thin lines or small spots; with one: the difference
    from it. A pixel stands
    out when its residual is over ``FINE_Z`` robust spreads of the residual on the ``ring``.
    """
    wy0, wy1, wx0, wx1 = window
    luma = _luma(rgb[wy0:wy1, wx0:wx1].astype(np.float32))
    if ref_rgb is not None:
        residual = luma - _luma(ref_rgb[wy0:wy1, wx0:wx1].astype(np.float32))
    else:
        # white top-hat minus black top-hat: what an opening (a closing) of FINE_SIZE px removes
        opened = ndimage.grey_opening(luma, size=(FINE_SIZE, FINE_SIZE), mode="nearest")
        closed = ndimage.grey_closing(luma, size=(FINE_SIZE, FINE_SIZE), mode="nearest")
        residual = (luma - opened) - (closed - luma)
    normal = residual[ring]
    centre = float(np.median(normal))
    spread = max(_mad(normal), 1.0)
    return np.asarray(np.abs(residual - centre) > FINE_Z * spread)


def _measure(
    region: Region,
    values: np.ndarray,
    baseline: float,
    relative: float,
    threshold: float | None,
    rgb: np.ndarray,
    ref_rgb: np.ndarray | None,
    part: _Part,
    refine: bool,
) -> _Measured:
    """The region's pixels: the map's core, or within the map's wider blob the pixels that differ."""
    height, width = values.shape
    x0, y0, x1, y1 = _box(region, height, width)
    crop = values[y0:y1, x0:x1]
    peak = float(crop.max())
    level = baseline + relative * (peak - baseline)
    if threshold is not None and threshold < peak:
        level = max(level, threshold)
    core = crop >= level
    if not core.any():
        core = crop >= peak
    low = baseline + 0.5 * relative * (peak - baseline)
    search = core | (crop >= low)
    # a window around the box, with a ring of ordinary part pixels around the search area
    pad = int(min(40, max(4, round(0.5 * math.sqrt(float(search.sum()))))))
    wy0, wy1 = max(y0 - pad - 2, 0), min(y1 + pad + 2, height)
    wx0, wx1 = max(x0 - pad - 2, 0), min(x1 + pad + 2, width)
    inside = np.zeros((wy1 - wy0, wx1 - wx0), dtype=bool)
    inside[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0] = search
    away = ndimage.distance_transform_cdt(~inside, metric="chessboard")
    ring = (away > 2) & (away <= pad + 2)
    window_values = values[wy0:wy1, wx0:wx1]
    quiet = ring & (window_values < low)
    ring = quiet if quiet.sum() >= 8 else ring & (window_values < level)
    factor = part.factor
    on_part = part.small[np.arange(wy0, wy1)[:, None] // factor, np.arange(wx0, wx1)[None, :] // factor]
    if (ring & on_part).sum() >= 8:
        ring &= on_part
    ring_rows, ring_cols = np.nonzero(ring)
    ring_rows, ring_cols = ring_rows + wy0, ring_cols + wx0
    ring_lab = _to_lab(rgb[ring_rows, ring_cols])
    ref_ring = None
    if ref_rgb is not None and ring_rows.size:
        ref_ring = _to_lab(ref_rgb[ring_rows, ring_cols])
        offset = ring_lab[:, 0] - ref_ring[:, 0]
        if float(np.median(np.abs(offset - np.median(offset)))) > REFERENCE_MISALIGNED:
            ref_ring = None  # the reference does not line up here: compare with the ring instead

    pixels = core
    # only a smooth map (its blob at half the level much wider than its core, as an expert's patch
    # map upsampled) needs the image to say where the defect is; a sharp one outlines it already
    if refine and ring_rows.size >= 8 and search.sum() >= SMOOTH_MAP * core.sum():
        # the differing pixels replace the core when they are a small part of it (a thin scratch in
        # a smooth map); when they are most of it the map already fits, and the core keeps the
        # defect's pixels that happen to look ordinary
        lower, upper = max(6.0, REFINED_MIN_SHARE * core.sum()), REFINED_MAX_SHARE * core.sum()
        in_box = (slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0))
        if not part.whole and (search & on_part[in_box]).sum() >= 8:
            search = search & on_part[in_box]  # colours off the part (background) differ anyway
        window_rgb = rgb[wy0:wy1, wx0:wx1].reshape(-1, 3)
        lab = _to_lab(window_rgb)
        if ref_ring is not None and ref_rgb is not None:
            lab = lab - _to_lab(ref_rgb[wy0:wy1, wx0:wx1].reshape(-1, 3))
            normal = ring_lab - ref_ring
        else:
            normal = ring_lab
        centre = np.median(normal, axis=0)
        spread_l = max(_mad(normal[:, 0]), 1.5)
        chroma = np.hypot(normal[:, 1] - centre[1], normal[:, 2] - centre[2])
        spread_c = max(float(1.4826 * np.median(chroma)), 1.5)
        z_light = ((lab[:, 0] - centre[0]) / spread_l).reshape(ring.shape)
        z_colour = (np.hypot(lab[:, 1] - centre[1], lab[:, 2] - centre[2]) / spread_c).reshape(ring.shape)
        # darker, brighter and colour-shifted pixels apart: a dark hole beside bright grout is no
        # piece of the grout's pattern
        differs = np.zeros(ring.shape, dtype=bool)
        for kind in (
            z_light < -DIFFERS_Z,
            z_light > DIFFERS_Z,
            (z_colour > DIFFERS_Z) & (np.abs(z_light) <= DIFFERS_Z),
        ):
            differs |= _unlike_ring(kind, ring)
        differs = differs[in_box] & search
        if differs.sum() > upper:
            pass  # the map already fits what looks different: keep its core
        elif differs.sum() >= lower:
            pixels = differs
        else:
            # thin lines and small spots inside a texture's own variation
            aligned_ref = ref_rgb if ref_ring is not None else None
            fine = _fine_differences(rgb, aligned_ref, (wy0, wy1, wx0, wx1), ring)
            fine = _unlike_ring(fine, ring)[in_box] & search
            if lower <= fine.sum() <= upper:
                pixels = fine
    ys, xs = np.nonzero(pixels)
    ys, xs = ys + y0, xs + x0
    region_lab = _to_lab(rgb[ys, xs])
    if ref_ring is not None and ref_rgb is not None:
        # the reference's same pixels, shifted by the ring's difference (another exposure, or gain)
        shift = np.median(ring_lab - ref_ring, axis=0)
        expected = _to_lab(ref_rgb[ys, xs]) + shift
        return _Measured(ys, xs, region_lab, expected, _mad(ring_lab[:, 0] - ref_ring[:, 0]), "reference")
    if ring_rows.size:
        return _Measured(ys, xs, region_lab, ring_lab, _mad(ring_lab[:, 0]), "surroundings")
    return _Measured(ys, xs, region_lab, region_lab, 0.0, "surroundings")


def describe_regions(
    image: Image.Image,
    anomaly_map: np.ndarray,
    regions: Sequence[Region],
    *,
    threshold: float | None = None,
    relative: float = 0.5,
    reference: Image.Image | None = None,
    mask: np.ndarray | None = None,
    refine: bool = True,
) -> RegionDescription:
    """Describe ``regions`` (boxes in ``image``'s pixels) from ``anomaly_map`` and the image's pixels.

    ``anomaly_map`` is H x W, calibrated or raw (resized to the image when its size differs). A
    region's core is the map inside its box at or above ``median + relative * (peak - median)`` and,
    when given, above ``threshold``. With ``refine`` (the default) the region's pixels are, within
    the map's wider blob (half that level), those whose colour differs from a ring of ordinary part
    pixels around it (robust z over ``DIFFERS_Z`` in L* or a*b*), when there are enough of them: an
    expert's map is smoother than a thin scratch. ``reference``: a normal image of a fixed-pose part
    (the nearest one); its same pixels are then what the region is compared with, unless it is
    misaligned there. ``mask``: the part's mask when already known (else :func:`part_mask`).
    """
    query = image if image.mode == "RGB" else image.convert("RGB")
    width, height = query.size
    values = np.asarray(anomaly_map, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"the anomaly map must be 2-D (got shape {values.shape})")
    if mask is not None and np.shape(mask) != (height, width):
        raise ValueError(f"the part mask must be {height} x {width} (got {np.shape(mask)})")
    scale = math.ceil(max(width, height) / WORK_SIDE)
    if scale > 1:
        return _described_smaller(query, values, regions, scale, threshold, relative, reference, mask, refine)
    if values.shape != (height, width):
        values = np.asarray(
            Image.fromarray(values, mode="F").resize((width, height), Image.Resampling.BILINEAR),
            dtype=np.float32,
        )
    if mask is not None:
        full_mask = np.asarray(mask, dtype=bool)
        part = _Part(_reduce_mask(full_mask), _factor(width, height), bool(full_mask.all()), (width, height))
    else:
        part = _find_part(query)
    factor = part.factor
    step = max(1, round(math.sqrt(values.size / 16384)))  # the median of about 16k values is plenty
    baseline = float(np.median(values[::step, ::step]))
    rgb = np.asarray(query)
    ref_rgb = None
    if reference is not None:
        ref = reference if reference.mode == "RGB" else reference.convert("RGB")
        if ref.size != query.size:
            ref = ref.resize(query.size, Image.Resampling.BILINEAR)
        if reference_misalignment(query, ref) <= REFERENCE_MISALIGNED_IMAGE:
            ref_rgb = np.asarray(ref)
    ordered = sorted(regions, key=lambda r: (r.score, r.area), reverse=True)
    found = [
        _measure(region, values, baseline, relative, threshold, rgb, ref_rgb, part, refine)
        for region in ordered
    ]

    # the part, plus every region's pixels (a missing piece is part of the part's area)
    grown = part.small.copy()
    for measured in found:
        grown[measured.ys // factor, measured.xs // factor] = True
    if not grown.any():  # an empty mask given and no region: measure against the whole image
        grown[:] = True
    part_area = min(float(grown.sum()) * factor * factor, float(width * height))
    inner = _inner_distances(grown)
    outer: np.ndarray | None = None  # distances to the filled part's boundary, when needed
    half_thickness = max(float(inner.max()), 1.0)
    rows, cols = np.nonzero(grown)
    part_x0, part_x1 = cols.min() * factor, (cols.max() + 1) * factor
    part_y0, part_y1 = rows.min() * factor, (rows.max() + 1) * factor

    described = []
    for region, measured in zip(ordered, found, strict=True):
        ys, xs = measured.ys, measured.xs
        crop = np.zeros((ys.max() - ys.min() + 1, xs.max() - xs.min() + 1), dtype=bool)
        crop[ys - ys.min(), xs - xs.min()] = True
        shape, blobs, axis_ratio, length_over_width, fill = _shape(crop)
        ys_small, xs_small = ys // factor, xs // factor
        cx, cy = float(xs.mean()) + 0.5, float(ys.mean()) + 0.5
        side = _side((cx - part_x0) / max(part_x1 - part_x0, 1), (cy - part_y0) / max(part_y1 - part_y0, 1))
        position: Position
        if _at_boundary(inner[ys_small, xs_small], half_thickness):
            if outer is None and not part.whole:
                filled = _fill_holes(grown)
                outer = inner if filled.sum() == grown.sum() else _inner_distances(filled)
            at_rim = outer is None or _at_boundary(outer[ys_small, xs_small], half_thickness)
            position = "edge" if at_rim else "inner edge"
        elif side is None:
            position = "centre"
        else:
            position = "inside"
        contrast, lightness, colour, hue = _judge_contrast(
            measured.region_lab, measured.other_lab, measured.noise
        )
        described.append(
            DescribedRegion(
                box=(region.x0, region.y0, region.x1, region.y1),
                score=region.score,
                area_px=len(xs),
                area_pct_of_part=round(100.0 * len(xs) / max(part_area, 1.0), 3),
                shape=shape,
                blobs=blobs,
                axis_ratio=round(axis_ratio, 3),
                length_over_width=round(length_over_width, 3),
                fill=round(fill, 3),
                contrast=contrast,
                lightness_delta=round(lightness, 2),
                colour_delta=round(colour, 2),
                hue=hue,
                compared_with=measured.compared,
                position=position,
                side=side,
                whole_image=part.whole,
            )
        )
    return RegionDescription(regions=described, part_area_px=round(part_area), whole_image=part.whole)


def _described_smaller(
    query: Image.Image,
    values: np.ndarray,
    regions: Sequence[Region],
    scale: int,
    threshold: float | None,
    relative: float,
    reference: Image.Image | None,
    mask: np.ndarray | None,
    refine: bool,
) -> RegionDescription:
    """:func:`describe_regions` on copies ``scale`` times smaller; pixel counts and boxes in full size."""
    width, height = query.size
    small = query.reduce(scale)
    size = small.size
    if values.shape != (height, width):
        values = np.asarray(
            Image.fromarray(values, mode="F").resize((width, height), Image.Resampling.BILINEAR),
            dtype=np.float32,
        )
    small_values = np.asarray(Image.fromarray(values, mode="F").reduce(scale), dtype=np.float32)
    small_regions = [
        r.model_copy(
            update={
                "x0": min(r.x0 // scale, size[0] - 1),
                "y0": min(r.y0 // scale, size[1] - 1),
                "x1": max(min(math.ceil(r.x1 / scale), size[0]), min(r.x0 // scale, size[0] - 1) + 1),
                "y1": max(min(math.ceil(r.y1 / scale), size[1]), min(r.y0 // scale, size[1] - 1) + 1),
            }
        )
        for r in regions
    ]
    small_mask = None
    if mask is not None:
        grid = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255).reduce(scale)
        small_mask = np.asarray(grid) >= 128
    small_reference = None
    if reference is not None:
        ref = reference if reference.mode == "RGB" else reference.convert("RGB")
        small_reference = (ref if ref.size == (width, height) else ref.resize((width, height))).reduce(scale)
    described = describe_regions(
        small,
        small_values,
        small_regions,
        threshold=threshold,
        relative=relative,
        reference=small_reference,
        mask=small_mask,
        refine=refine,
    )
    # the boxes as given, in the order describe_regions put them (strongest first)
    ordered = sorted(regions, key=lambda r: (r.score, r.area), reverse=True)
    return described.model_copy(
        update={
            "part_area_px": described.part_area_px * scale * scale,
            "regions": [
                d.model_copy(update={"box": (r.x0, r.y0, r.x1, r.y1), "area_px": d.area_px * scale * scale})
                for d, r in zip(described.regions, ordered, strict=True)
            ],
        }
    )


def _grey(picture: Image.Image, side: int) -> np.ndarray:
    return np.asarray(picture.convert("L").resize((side, side), Image.Resampling.BILINEAR), dtype=np.float32)


def reference_misalignment(image: Image.Image, reference: Image.Image, side: int = 64) -> float:
    """How badly ``reference`` lines up with ``image``: mean |difference - its median|, grey, ``side`` px.

    The median takes out a change of exposure; a defect moves the mean little.
    """
    difference = _grey(image, side) - _grey(reference, side)
    return float(np.abs(difference - np.median(difference)).mean())


def nearest_reference(
    image: Image.Image, references: Sequence[Image.Image], side: int = 64
) -> Image.Image | None:
    """The reference that lines up best with the query (:func:`reference_misalignment`).

    Only meaningful for fixed-pose parts.
    """
    if not references:
        return None

    distances = [reference_misalignment(image, ref, side) for ref in references]
    return references[int(np.argmin(distances))]
