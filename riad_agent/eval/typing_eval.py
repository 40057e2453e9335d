"""Defect typing by labelled exemplars (issue 18): leave-one-out over an MVTec-layout folder's labelled defects.

Each labelled test image is typed against ``exemplars`` other labelled images of every defect type of
its category, exactly as the product memory types a region (``riad_agent.products``): the region's
signature (the defect's EfficientNet-Lite0 cells and the region describer's words) against each
exemplar's (its mask's cells), :func:`~riad_agent.products.embedding.signature_similarity`, a
type's score = its best exemplar's. The query is its mask's region (``box="mask"``: typing alone)
or the vision expert's strongest region against normal references from ``train/good``, its cells
picked by the expert's prior map (``box="expert"``: what an inspection does). Reported per category: top-1
accuracy, chance (1 / number of types), and how often the typing margin rule states a type and is
right then (:data:`riad_agent.evidence.TYPING_MARGIN`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict

from riad_agent.errors import InvalidRequestError
from riad_agent.evidence import ExemplarTyping
from riad_agent.products import ImageEmbedder
from riad_agent.products.embedding import (
    MASK_SHARE,
    ImageFeatures,
    RegionSignature,
    describe_box,
    signature_similarity,
)
from riad_agent.protocols import AnomalyMap, Expert

BoxSource = Literal["mask", "expert"]
ExpertBox = Callable[[Image.Image], tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]]
"""An image -> the expert's strongest region (x0, y0, x1, y1), its pixel map and its prior map."""


class TypingResult(BaseModel):
    """Typing figures of one category."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: str
    types: int
    queries: int
    exemplars: int
    box: BoxSource
    accuracy: float
    chance: float
    typed: float  # share of queries the margin rule states a type for
    right_when_typed: float


@dataclass(frozen=True)
class _Labelled:
    path: Path
    defect_type: str
    mask: Path


def labelled_defects(category_dir: Path) -> list[_Labelled]:
    """Every ``test/<type>/<name>.png`` with its ``ground_truth/<type>/<name>_mask.png`` (good excluded)."""
    found = []
    for folder in sorted(p for p in (category_dir / "test").iterdir() if p.is_dir() and p.name != "good"):
        for image in sorted(folder.glob("*.png")):
            mask = category_dir / "ground_truth" / folder.name / f"{image.stem}_mask.png"
            if mask.is_file():
                found.append(_Labelled(image, folder.name, mask))
    return found


def read_mask(mask: Path) -> np.ndarray:
    """A mask file as 0/1 float32 (pixels above half-way are the defect)."""
    return (np.asarray(Image.open(mask).convert("L")) > 127).astype(np.float32)


def mask_signature(features: ImageFeatures, image: Image.Image, mask: Path) -> RegionSignature:
    """A labelled defect's signature by its mask: the exemplar side of every typing comparison."""
    marked = read_mask(mask)
    box = mask_box(mask)
    return features.region_signature(box, describe_box(image, marked, box, refine=False), marked, MASK_SHARE)


def expert_signature(
    features: ImageFeatures,
    image: Image.Image,
    box: tuple[int, int, int, int],
    values: np.ndarray,
    prior: np.ndarray,
) -> RegionSignature:
    """The signature of the expert's region ``box`` (pixel map ``values``, cells by the ``prior`` map)."""
    return features.region_signature(box, describe_box(image, values, box, refine=True), prior)


def mask_box(mask: Path) -> tuple[int, int, int, int]:
    """The bounding box ``(x0, y0, x1, y1)`` of a mask's marked pixels (the whole image when empty)."""
    marked = np.asarray(Image.open(mask).convert("L")) > 127
    ys, xs = np.nonzero(marked)
    if not len(xs):
        return 0, 0, marked.shape[1], marked.shape[0]
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def strongest_box(expert: Expert, references: Sequence[Image.Image]) -> ExpertBox:
    """The expert's strongest region against ``references`` (its peak area when it found none)."""

    def box_of(image: Image.Image) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
        return strongest_of(expert.analyse(image, references), image.size)

    return box_of


def strongest_of(
    found: AnomalyMap, size: tuple[int, int]
) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """The expert's strongest region of an image of ``size`` (its peak area when it found none), its
    pixel map and its prior map."""
    if found.regions:
        top = max(found.regions, key=lambda region: region.score)
        return (top.x0, top.y0, top.x1, top.y1), found.pixel_scores, found.prior_map()
    y, x = np.unravel_index(int(np.argmax(found.pixel_scores)), found.pixel_scores.shape)
    half = max(size) // 16
    peak = (max(0, int(x) - half), max(0, int(y) - half), int(x) + half, int(y) + half)
    return peak, found.pixel_scores, found.prior_map()


def loo_typings(
    category_dir: Path,
    embedder: ImageEmbedder,
    exemplars: int,
    box: BoxSource = "mask",
    expert_box: ExpertBox | None = None,
    seed: int = 0,
) -> dict[Path, ExemplarTyping]:
    """Each labelled image of a category typed against ``exemplars`` other labelled images per type.

    Empty when the category has fewer than two labelled types. The typing's ``exemplars`` are the
    chosen exemplars' paths, in the order of its matches.
    """
    items = labelled_defects(category_dir)
    types = sorted({item.defect_type for item in items})
    if len(types) < 2:
        return {}
    if box == "expert" and expert_box is None:
        raise InvalidRequestError("box='expert' needs an expert_box function")
    signatures = {}  # each labelled image's region signature by its mask (the exemplar side)
    queries = {}  # the query side: the same, or the expert's strongest region by its prior map
    for item in items:
        image = Image.open(item.path).convert("RGB")
        features = embedder.features(image)
        signatures[item.path] = mask_signature(features, image, item.mask)
        if expert_box is None or box == "mask":
            queries[item.path] = signatures[item.path]
        else:
            queries[item.path] = expert_signature(features, image, *expert_box(image))
    rng = np.random.default_rng(seed)
    typings = {}
    for item in items:
        scores = []
        for kind in types:
            pool = [other for other in items if other.defect_type == kind and other.path != item.path]
            if not pool:
                continue
            chosen = [pool[i] for i in rng.permutation(len(pool))[:exemplars]]
            scored = [(signature_similarity(queries[item.path], signatures[c.path]), c) for c in chosen]
            similarity, best = max(scored, key=lambda pair: pair[0])
            scores.append((kind, similarity, str(best.path)))
        typings[item.path] = ExemplarTyping.of(
            category_dir.name, [(kind, score) for kind, score, _ in scores], [path for _, _, path in scores]
        )
    return typings


def evaluate_category(
    category_dir: Path,
    embedder: ImageEmbedder,
    exemplars: int,
    box: BoxSource = "mask",
    expert_box: ExpertBox | None = None,
    seed: int = 0,
) -> TypingResult | None:
    """Leave-one-out typing of one category; None when it has fewer than two labelled types."""
    typings = loo_typings(category_dir, embedder, exemplars, box, expert_box, seed)
    if not typings:
        return None
    truth = {item.path: item.defect_type for item in labelled_defects(category_dir)}
    types = sorted(set(truth.values()))
    right = typed = typed_right = 0
    for path, typing in typings.items():
        hit = typing.matches[0][0] == truth[path]
        right += hit
        if typing.defect_type is not None:
            typed += 1
            typed_right += hit
    n = len(typings)
    return TypingResult(
        category=category_dir.name,
        types=len(types),
        queries=n,
        exemplars=exemplars,
        box=box,
        accuracy=right / n,
        chance=1 / len(types),
        typed=typed / n,
        right_when_typed=typed_right / max(typed, 1),
    )


def categories_of(data: Path, only: Sequence[str] | None) -> list[Path]:
    """The category folders of an MVTec-layout folder (those with ``test/``), optionally filtered."""
    if not data.is_dir():
        raise InvalidRequestError(f"--data {data} is not a folder")
    found = sorted(p for p in data.iterdir() if (p / "test").is_dir())
    if only:
        missing = sorted(set(only) - {p.name for p in found})
        if missing:
            raise InvalidRequestError(f"no category {', '.join(missing)} under {data}")
        found = [p for p in found if p.name in only]
    if not found:
        raise InvalidRequestError(f"no MVTec-layout category (a folder with test/) under {data}")
    return found
