"""Procedural, seeded product and texture images with synthetic defects and exact pixel masks.

Everything is drawn with numpy from a seed, so the data is licence-clean and reproducible: the same
``(category, defect, seed, size)`` always gives identical pixels. A defective sample is its normal
sample (same seed) with the defect painted on top: pixels outside ``mask`` are untouched, and the
mask is exactly the footprint the defect painted (for ``bent``, the warped pixels that changed).

Categories: ``synthetic/washer`` (a round metal part on a plain background), ``synthetic/fabric``
(a woven texture) and ``synthetic/tile`` (a structured grid of tiles and grout).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from riad_agent.errors import InvalidRequestError, OutputWriteError

CATEGORIES: tuple[str, ...] = ("synthetic/washer", "synthetic/fabric", "synthetic/tile")
DEFECTS: tuple[str, ...] = ("scratch", "crack", "hole", "stain", "missing_piece", "bent", "colour")

#: Products with pose variation: an asymmetric bracket (a plate with two holes, a notch and a printed
#: band) on a fixtured line (``bracket``: pose fixed, a rotated or shifted part is the ``misplaced``
#: defect) and loose on a belt (``bracket-loose``: any rotation, shifts of up to 6 %, lighting varies).
POSE_CATEGORIES: tuple[str, ...] = ("synthetic/bracket", "synthetic/bracket-loose")
#: Normal pose of each generated category: "fixed" (the references are aligned) or "free".
CATEGORY_POSE: dict[str, str] = {
    "synthetic/washer": "free",
    "synthetic/fabric": "free",
    "synthetic/tile": "fixed",
    "synthetic/bracket": "fixed",
    "synthetic/bracket-loose": "free",
}
#: Defects of the pose categories: the usual ones plus ``misplaced`` (fixed pose only).
POSE_DEFECTS: tuple[str, ...] = (*DEFECTS, "misplaced")


@dataclass(frozen=True)
class SyntheticSample:
    """One generated image with its defect mask (all False for a normal sample)."""

    image: Image.Image
    mask: np.ndarray
    category: str
    defect: str | None
    bbox: tuple[int, int, int, int] | None
    seed: int

    @property
    def is_anomalous(self) -> bool:
        return self.defect is not None


@dataclass
class _Scene:
    """A rendered normal image and what defects need to know about it."""

    pixels: np.ndarray  # float64 HxWx3, 0..255 (before quantisation)
    support: np.ndarray  # bool HxW: where the object is (all True for textures)
    backdrop: np.ndarray  # float64 HxWx3: what shows through a missing piece
    anchor: Callable[[np.random.Generator], tuple[float, float]]  # (x, y) centre for a defect
    edge_anchor: Callable[[np.random.Generator], tuple[float, float]]  # a centre on the object's rim


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    return xs + 0.5, ys + 0.5


def _texture_anchor(size: int) -> Callable[[np.random.Generator], tuple[float, float]]:
    def anchor(rng: np.random.Generator) -> tuple[float, float]:
        return float(rng.uniform(0.22, 0.78) * size), float(rng.uniform(0.22, 0.78) * size)

    return anchor


def _render_washer(rng: np.random.Generator, size: int) -> _Scene:
    xs, ys = _grid(size)
    cx = size / 2 + rng.uniform(-0.02, 0.02) * size
    cy = size / 2 + rng.uniform(-0.02, 0.02) * size
    r_out = 0.36 * size * (1 + rng.uniform(-0.01, 0.01))
    r_in = 0.15 * size * (1 + rng.uniform(-0.01, 0.01))
    light = rng.uniform(0, 2 * math.pi)
    brightness = rng.uniform(0.94, 1.06)
    gradient_dir = rng.uniform(0, 2 * math.pi)

    dx, dy = xs - cx, ys - cy
    radius = np.hypot(dx, dy)
    phi = np.arctan2(dy, dx)
    coverage = np.clip(r_out - radius + 0.5, 0, 1) * np.clip(radius - r_in + 0.5, 0, 1)

    ramp = (xs * math.cos(gradient_dir) + ys * math.sin(gradient_dir)) / size
    backdrop_gray = (62 + 8 * ramp) * brightness
    backdrop = np.stack([backdrop_gray, backdrop_gray * 1.02, backdrop_gray * 1.06], axis=-1)

    width = r_out - r_in
    across = np.clip((radius - r_in) / width, 0, 1)
    bevel = 1 - 0.35 * (np.abs(across - 0.5) * 2) ** 4
    brushed = 5 * np.sin(radius * 1.7) + 3 * np.sin(radius * 0.61 + 1.3)
    metal = (150 + 45 * np.cos(phi - light) + brushed) * bevel * brightness
    part = np.stack([metal, metal * 1.0, metal * 1.04], axis=-1)

    pixels = backdrop * (1 - coverage[..., None]) + part * coverage[..., None]
    pixels += rng.normal(0, 2.0, size=pixels.shape)

    def anchor(r: np.random.Generator) -> tuple[float, float]:
        angle = r.uniform(0, 2 * math.pi)
        rad = r.uniform(r_in + 0.3 * width, r_out - 0.3 * width)
        return cx + rad * math.cos(angle), cy + rad * math.sin(angle)

    def edge_anchor(r: np.random.Generator) -> tuple[float, float]:
        angle = r.uniform(0, 2 * math.pi)
        rad = r_out - 0.02 * size
        return cx + rad * math.cos(angle), cy + rad * math.sin(angle)

    return _Scene(pixels, coverage > 0, backdrop, anchor, edge_anchor)


def _render_fabric(rng: np.random.Generator, size: int) -> _Scene:
    xs, ys = _grid(size)
    period = size / 21.0
    angle = math.radians(rng.uniform(-2.0, 2.0))
    shift_u, shift_v = rng.uniform(0, 2 * period, size=2)
    brightness = rng.uniform(0.94, 1.06)
    u = xs * math.cos(angle) + ys * math.sin(angle) + shift_u
    v = -xs * math.sin(angle) + ys * math.cos(angle) + shift_v
    warp = 0.5 + 0.5 * np.cos(2 * math.pi * (u / period - 0.5))
    weft = 0.5 + 0.5 * np.cos(2 * math.pi * (v / period - 0.5))
    over = (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    thread = np.where(over, warp, weft) ** 0.7
    shade = (0.62 + 0.38 * thread) * brightness
    colour = np.array([168.0, 136.0, 98.0])
    pixels = shade[..., None] * colour
    pixels += rng.normal(0, 3.0, size=pixels.shape)
    backdrop = np.broadcast_to(np.array([28.0, 26.0, 30.0]), pixels.shape).copy()
    anchor = _texture_anchor(size)
    return _Scene(pixels, np.ones((size, size), dtype=bool), backdrop, anchor, anchor)


def _render_tile(rng: np.random.Generator, size: int) -> _Scene:
    xs, ys = _grid(size)
    pitch = size / 4.0
    grout = max(2.0, size / 64.0)
    ox, oy = rng.uniform(-0.03, 0.03, size=2) * size
    brightness = rng.uniform(0.94, 1.06)
    fx = np.mod(xs + ox, pitch)
    fy = np.mod(ys + oy, pitch)
    edge = np.minimum(np.minimum(fx, pitch - fx), np.minimum(fy, pitch - fy))
    in_grout = np.clip(grout / 2 - edge + 0.5, 0, 1)
    speckle = ndimage.gaussian_filter(rng.normal(0, 1, size=(size, size)), sigma=size / 128.0)
    speckle /= speckle.std() + 1e-9
    glaze = 1 + 0.06 * speckle - 0.08 * np.clip(1 - edge / (0.12 * pitch), 0, 1)
    tile = np.array([176.0, 96.0, 70.0]) * glaze[..., None]
    mortar = np.broadcast_to(np.array([205.0, 200.0, 190.0]), tile.shape)
    pixels = (tile * (1 - in_grout[..., None]) + mortar * in_grout[..., None]) * brightness
    pixels += rng.normal(0, 2.0, size=pixels.shape)
    backdrop = np.broadcast_to(np.array([40.0, 36.0, 34.0]), pixels.shape).copy()
    anchor = _texture_anchor(size)
    return _Scene(pixels, np.ones((size, size), dtype=bool), backdrop, anchor, anchor)


def _support_anchor(support: np.ndarray, erode: int) -> Callable[[np.random.Generator], tuple[float, float]]:
    """A random pixel centre inside ``support`` eroded by ``erode`` pixels (the support if that empties)."""
    inner = ndimage.binary_erosion(support, iterations=max(1, erode)) if erode > 0 else support
    rows, cols = np.nonzero(inner if inner.any() else support)

    def anchor(rng: np.random.Generator) -> tuple[float, float]:
        i = int(rng.integers(0, len(rows)))
        return float(cols[i]) + 0.5, float(rows[i]) + 0.5

    return anchor


def _render_bracket(
    rng: np.random.Generator, size: int, free: bool, misplace: np.random.Generator | None = None
) -> _Scene:
    """An asymmetric flat part: a rounded plate, a large and a small hole, a notch and a printed band.

    ``free``: any rotation and a shift of up to 6 % of the side, light direction and gain vary more.
    Fixed: a rotation of at most 1.5 degrees and a 1 % shift. ``misplace`` (a generator) turns a fixed
    part by 12-35 degrees or shifts it by 8-12 % (MVTec's "misplaced").
    """
    xs, ys = _grid(size)
    if free:
        theta = rng.uniform(0, 2 * math.pi)
        sx, sy = rng.uniform(-0.06, 0.06, size=2) * size
        gain = rng.uniform(0.88, 1.12)
    else:
        theta = math.radians(rng.uniform(-1.5, 1.5))
        sx, sy = rng.uniform(-0.01, 0.01, size=2) * size
        gain = rng.uniform(0.95, 1.05)
    light = rng.uniform(0, 2 * math.pi)
    if misplace is not None:
        if misplace.random() < 0.6:
            theta += math.radians(misplace.uniform(12, 35)) * (1 if misplace.random() < 0.5 else -1)
        else:
            angle = misplace.uniform(0, 2 * math.pi)
            shift = misplace.uniform(0.08, 0.12) * size
            sx, sy = sx + shift * math.cos(angle), sy + shift * math.sin(angle)
    cx, cy = size / 2 + sx, size / 2 + sy
    # part coordinates (u, v) in units of the side, centred on the part
    dx, dy = xs - cx, ys - cy
    u = (dx * math.cos(theta) + dy * math.sin(theta)) / size
    v = (-dx * math.sin(theta) + dy * math.cos(theta)) / size
    half_w, half_h, corner = 0.30, 0.19, 0.06
    qx = np.maximum(np.abs(u) - (half_w - corner), 0)
    qy = np.maximum(np.abs(v) - (half_h - corner), 0)
    outside = np.hypot(qx, qy) - corner  # signed distance of the rounded rectangle (side units)
    big = np.hypot(u + 0.14, v) - 0.075
    small = np.hypot(u - 0.17, v + 0.08) - 0.035
    notch = np.maximum(np.abs(u - 0.30) - 0.06, np.abs(v - 0.06) - 0.045)
    shape = np.maximum.reduce([outside, -big, -small, -notch])
    coverage = np.clip(-shape * size + 0.5, 0, 1)

    ramp = (xs * math.cos(light) + ys * math.sin(light)) / size
    backdrop_gray = (205 + 10 * ramp) * gain
    backdrop = np.stack([backdrop_gray, backdrop_gray * 0.99, backdrop_gray * 0.96], axis=-1)
    shade = (118 + 30 * (u * math.cos(light - theta) + v * math.sin(light - theta)) / 0.3) * gain
    grain = 4 * np.sin(u * size * 1.3) + 2 * np.sin(v * size * 0.7 + 0.4)
    metal = shade + grain
    part = np.stack([metal * 0.92, metal * 0.98, metal * 1.08], axis=-1)
    band = np.clip(0.5 - (np.abs(u - 0.05) - 0.035) * size, 0, 1) * (np.abs(v) < half_h - 0.03)
    ink = np.array([170.0, 40.0, 35.0]) * gain
    part = part * (1 - band[..., None]) + ink * band[..., None]
    pixels = backdrop * (1 - coverage[..., None]) + part * coverage[..., None]
    pixels += rng.normal(0, 2.0, size=pixels.shape)
    support = coverage > 0.5
    rim = support & ~ndimage.binary_erosion(support, iterations=max(1, size // 64))
    return _Scene(
        pixels, support, backdrop, _support_anchor(support, max(2, size // 32)), _support_anchor(rim, 0)
    )


_RENDERERS: dict[str, Callable[[np.random.Generator, int], _Scene]] = {
    "synthetic/washer": _render_washer,
    "synthetic/fabric": _render_fabric,
    "synthetic/tile": _render_tile,
    "synthetic/bracket": lambda rng, size: _render_bracket(rng, size, free=False),
    "synthetic/bracket-loose": lambda rng, size: _render_bracket(rng, size, free=True),
}


def _blob(rng: np.random.Generator, size: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    """An irregular filled blob (a wobbly ellipse) as a boolean mask."""
    xs, ys = _grid(size)
    dx, dy = xs - centre[0], ys - centre[1]
    turn = rng.uniform(0, math.pi)
    stretch = rng.uniform(0.7, 1.0)
    u = dx * math.cos(turn) + dy * math.sin(turn)
    v = (-dx * math.sin(turn) + dy * math.cos(turn)) / stretch
    phi = np.arctan2(v, u)
    wobble = np.ones_like(phi)
    for harmonic in (2, 3, 5):
        wobble += rng.uniform(0.03, 0.1) * np.sin(harmonic * phi + rng.uniform(0, 2 * math.pi))
    return np.hypot(u, v) <= radius * wobble


def _stroke(size: int, points: Sequence[tuple[float, float]], width: float) -> np.ndarray:
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).line(
        [(float(x), float(y)) for x, y in points], fill=255, width=max(1, round(width))
    )
    return np.asarray(canvas) > 0


def _paint(pixels: np.ndarray, mask: np.ndarray, target: np.ndarray, keep: float) -> np.ndarray:
    out = pixels.copy()
    out[mask] = keep * pixels[mask] + (1 - keep) * target
    return out


def _defect_scratch(rng: np.random.Generator, scene: _Scene, size: int) -> tuple[np.ndarray, np.ndarray]:
    s = size / 256.0
    cx, cy = scene.anchor(rng)
    direction = rng.uniform(0, math.pi)
    length = rng.uniform(45, 75) * s
    bend = rng.uniform(-0.25, 0.25) * length
    points = []
    for t in np.linspace(-0.5, 0.5, 40):
        along = t * length
        side = bend * (1 - 4 * t * t)
        points.append(
            (
                cx + along * math.cos(direction) - side * math.sin(direction),
                cy + along * math.sin(direction) + side * math.cos(direction),
            )
        )
    mask = _stroke(size, points, rng.uniform(2.0, 3.0) * s) & scene.support
    return mask, _paint(scene.pixels, mask, np.array([238.0, 236.0, 230.0]), 0.3)


def _defect_crack(rng: np.random.Generator, scene: _Scene, size: int) -> tuple[np.ndarray, np.ndarray]:
    s = size / 256.0
    x, y = scene.anchor(rng)
    heading = rng.uniform(0, 2 * math.pi)
    points = [(x, y)]
    for _ in range(int(rng.integers(9, 14))):
        heading += rng.normal(0, 0.6)
        step = rng.uniform(4, 8) * s
        x, y = x + step * math.cos(heading), y + step * math.sin(heading)
        points.append((x, y))
    mask = _stroke(size, points, rng.uniform(2.0, 3.0) * s) & scene.support
    return mask, _paint(scene.pixels, mask, np.array([18.0, 16.0, 15.0]), 0.15)


def _defect_hole(rng: np.random.Generator, scene: _Scene, size: int) -> tuple[np.ndarray, np.ndarray]:
    s = size / 256.0
    centre = scene.anchor(rng)
    mask = _blob(rng, size, centre, rng.uniform(7, 11) * s) & scene.support
    target = np.array([12.0, 12.0, 14.0])
    return mask, _paint(scene.pixels, mask, target, 0.05)


def _defect_stain(rng: np.random.Generator, scene: _Scene, size: int) -> tuple[np.ndarray, np.ndarray]:
    s = size / 256.0
    centre = scene.anchor(rng)
    mask = _blob(rng, size, centre, rng.uniform(11, 17) * s) & scene.support
    target = np.array([96.0, 70.0, 18.0]) if rng.random() < 0.5 else np.array([40.0, 62.0, 90.0])
    return mask, _paint(scene.pixels, mask, target, 0.4)


def _defect_missing(rng: np.random.Generator, scene: _Scene, size: int) -> tuple[np.ndarray, np.ndarray]:
    s = size / 256.0
    centre = scene.edge_anchor(rng)
    mask = _blob(rng, size, centre, rng.uniform(14, 20) * s) & scene.support
    out = scene.pixels.copy()
    out[mask] = scene.backdrop[mask] + rng.normal(0, 2.0, size=(int(mask.sum()), 3))
    return mask, out


def _defect_bent(rng: np.random.Generator, scene: _Scene, size: int) -> tuple[np.ndarray, np.ndarray]:
    s = size / 256.0
    cx, cy = scene.edge_anchor(rng)
    radius = rng.uniform(16, 22) * s
    amplitude = rng.uniform(5, 8) * s
    push = rng.uniform(0, 2 * math.pi)
    xs, ys = _grid(size)
    r = np.hypot(xs - cx, ys - cy) / radius
    falloff = np.clip(1 - r * r, 0, 1) ** 2
    src_x = xs - 0.5 - amplitude * falloff * math.cos(push)
    src_y = ys - 0.5 - amplitude * falloff * math.sin(push)
    warped = np.stack(
        [
            ndimage.map_coordinates(scene.pixels[..., c], [src_y, src_x], order=1, mode="nearest")
            for c in range(3)
        ],
        axis=-1,
    )
    changed = np.abs(warped - scene.pixels).max(axis=-1) > 12.0
    mask = changed & (r < 1)
    out = scene.pixels.copy()
    out[mask] = warped[mask]
    return mask, out


def _defect_colour(rng: np.random.Generator, scene: _Scene, size: int) -> tuple[np.ndarray, np.ndarray]:
    s = size / 256.0
    centre = scene.anchor(rng)
    mask = _blob(rng, size, centre, rng.uniform(12, 18) * s) & scene.support
    tints = (np.array([1.45, 0.7, 0.55]), np.array([0.55, 0.85, 1.5]), np.array([0.6, 1.35, 0.6]))
    tint = tints[int(rng.integers(0, len(tints)))]
    out = scene.pixels.copy()
    out[mask] = scene.pixels[mask] * tint + 10.0
    return mask, out


_DEFECT_PAINTERS: dict[str, Callable[[np.random.Generator, _Scene, int], tuple[np.ndarray, np.ndarray]]] = {
    "scratch": _defect_scratch,
    "crack": _defect_crack,
    "hole": _defect_hole,
    "stain": _defect_stain,
    "missing_piece": _defect_missing,
    "bent": _defect_bent,
    "colour": _defect_colour,
}
_ALL_DEFECTS: tuple[str, ...] = POSE_DEFECTS


def _canonical_category(category: str) -> str:
    name = category.strip().lower()
    if "/" not in name:
        name = f"synthetic/{name}"
    if name not in _RENDERERS:
        raise InvalidRequestError(
            f"unknown synthetic category {category!r}; choose one of {', '.join(CATEGORIES)}"
        )
    return name


def _quantise(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def generate_sample(category: str, defect: str | None, seed: int, size: int = 256) -> SyntheticSample:
    """Render one sample; ``defect=None`` gives a normal one. Same arguments, same pixels."""
    name = _canonical_category(category)
    if defect is not None and defect not in _ALL_DEFECTS:
        raise InvalidRequestError(f"unknown defect {defect!r}; choose one of {', '.join(DEFECTS)} or None")
    if defect == "misplaced" and name != "synthetic/bracket":
        raise InvalidRequestError(f"'misplaced' exists for synthetic/bracket only, not {name}")
    if not 32 <= size <= 2048:
        raise InvalidRequestError(f"size must be between 32 and 2048 pixels (got {size})")
    if seed < 0:
        raise InvalidRequestError(f"seed must be >= 0 (got {seed})")
    scene = _RENDERERS[name](np.random.default_rng([seed, 0]), size)
    base = _quantise(scene.pixels)
    scene.pixels = base.astype(np.float64)
    mask = np.zeros((size, size), dtype=bool)
    out = base
    bbox: tuple[int, int, int, int] | None = None
    if defect == "misplaced":
        moved = _render_bracket(
            np.random.default_rng([seed, 0]), size, free=False, misplace=np.random.default_rng([seed, 99])
        )
        out = _quantise(moved.pixels)
        mask = (moved.support != scene.support) | (np.abs(out.astype(int) - base).max(axis=-1) > 24)
        mask = ndimage.binary_opening(mask, iterations=1)
        rows, cols = np.nonzero(mask)
        bbox = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
    elif defect is not None:
        painter = _DEFECT_PAINTERS[defect]
        defect_rng = np.random.default_rng([seed, 1 + DEFECTS.index(defect)])
        min_pixels = max(8, int(0.001 * size * size))
        for _ in range(16):  # redraw when a defect lands where it would barely show
            mask, painted = painter(defect_rng, scene, size)
            candidate = base.copy()
            candidate[mask] = _quantise(painted[mask])
            mask = mask & (candidate != base).any(axis=-1)
            if mask.sum() >= min_pixels:
                out = candidate
                break
        else:  # pragma: no cover - guarded by tests over many seeds
            raise RuntimeError(f"could not place a visible {defect} on {name} (seed {seed})")
        rows, cols = np.nonzero(mask)
        bbox = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
    return SyntheticSample(
        image=Image.fromarray(out, mode="RGB"),
        mask=mask,
        category=name,
        defect=defect,
        bbox=bbox,
        seed=seed,
    )


def _child_seed(seed: int, *path: int) -> int:
    return int(np.random.SeedSequence([seed, *path]).generate_state(1, dtype=np.uint32)[0])


def write_mvtec_layout(
    root: str | Path,
    categories: Sequence[str] = CATEGORIES,
    n_train: int = 20,
    n_test_good: int = 4,
    n_test_per_defect: int = 2,
    seed: int = 0,
    size: int = 256,
    defects: Sequence[str] = DEFECTS,
) -> Path:
    """Write MVTec-AD's folder layout: ``<cat>/train/good``, ``<cat>/test/<type>``, ``<cat>/ground_truth``.

    Folder names are the short category names (``washer`` for ``synthetic/washer``); masks are
    0/255 PNGs named ``NNN_mask.png``. The bytes depend only on the arguments.
    """
    root = Path(root)
    for name in defects:
        if name not in _ALL_DEFECTS:
            raise InvalidRequestError(f"unknown defect {name!r}; choose from {', '.join(DEFECTS)}")
    try:
        for cat_index, category in enumerate(categories):
            name = _canonical_category(category)
            folder = root / name.split("/", 1)[1]
            plan: list[tuple[str, str | None, int]] = [
                ("train/good", None, n_train),
                ("test/good", None, n_test_good),
            ]
            plan += [
                (f"test/{d}", d, n_test_per_defect)
                for d in defects
                if d != "misplaced" or name == "synthetic/bracket"
            ]
            for split_index, (sub, kind, count) in enumerate(plan):
                defect = kind
                target = folder / sub
                target.mkdir(parents=True, exist_ok=True)
                for i in range(count):
                    sample = generate_sample(
                        name,
                        defect,
                        _child_seed(
                            seed, (*CATEGORIES, *POSE_CATEGORIES).index(name), cat_index, split_index, i
                        ),
                        size,
                    )
                    sample.image.save(target / f"{i:03d}.png", format="PNG")
                    if defect is not None:
                        mask_dir = folder / "ground_truth" / defect
                        mask_dir.mkdir(parents=True, exist_ok=True)
                        mask_png = Image.fromarray(sample.mask.astype(np.uint8) * 255, mode="L")
                        mask_png.save(mask_dir / f"{i:03d}_mask.png", format="PNG")
    except OSError as exc:
        raise OutputWriteError(f"cannot write the synthetic dataset under {root}: {exc}") from exc
    return root
