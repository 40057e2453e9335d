"""Typing with each exemplar also seen turned: does it help where the product's pose is free?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/typing_views.py LAYOUT [LAYOUT ...] [--exemplars 1 3]

The product memory types a region by its cells' EfficientNet-Lite0 features against each labelled
exemplar's (``signature_similarity``; a type's score is its best exemplar's). The features are not
rotation invariant, so a crack lying across a hazelnut does not match one lying along it. Here each
exemplar also gets signatures of its image and mask turned by 90, 180 and 270 degrees (``rot4``;
``flip8`` adds the mirror images) and a type's score is its best exemplar *view*'s. ``rot4-free`` and
``flip8-free`` turn the exemplars only for a product whose references resolve to a free pose (for a
fixed pose the orientation is part of what the defect is: a bent lead against a straight one).
Leave-one-out over each layout's labelled defects, the query by its mask (``mask``) or by the expert's
strongest region against 4 references from ``train/good`` (``expert``, what an inspection does), the
same seeded exemplar draws for every variant, as ``riad eval typing``. Choose on generated layouts and
``typing_residual.py --build-train`` (MVTec train images only); read the shared test subset once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))  # the sibling typing_residual.py
from typing_residual import exemplar_draws, report_layouts

from riad_agent.eval.typing_eval import (
    expert_signature,
    labelled_defects,
    mask_box,
    read_mask,
    strongest_box,
)
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.products import ImageEmbedder
from riad_agent.products.embedding import MASK_SHARE, RegionSignature, describe_box, signature_similarity

VARIANTS = ("shipped", "rot4", "flip8", "rot4-free", "flip8-free")
TURNS = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)


def box_of(marked: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(marked > 0.5)
    if not len(xs):
        return 0, 0, marked.shape[1], marked.shape[0]
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def views(image: Image.Image, marked: np.ndarray, mirrors: bool) -> list[tuple[Image.Image, np.ndarray]]:
    """The exemplar image and its mask turned by 0 / 90 / 180 / 270 degrees (and mirrored)."""
    mask = Image.fromarray((marked * 255).astype(np.uint8))
    out = []
    for flip in (False, True) if mirrors else (False,):
        base_image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else image
        base_mask = mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else mask
        for turn in TURNS:
            turned = base_image if turn is None else base_image.transpose(turn)
            turned_mask = base_mask if turn is None else base_mask.transpose(turn)
            out.append((turned, (np.asarray(turned_mask) > 127).astype(np.float32)))
    return out


def view_signatures(embedder: ImageEmbedder, image: Image.Image, marked: np.ndarray, mirrors: bool):
    found = []
    for turned, turned_mask in views(image, marked, mirrors):
        box = box_of(turned_mask)
        words = describe_box(turned, turned_mask, box, refine=False)
        found.append(embedder.features(turned).region_signature(box, words, turned_mask, MASK_SHARE))
    return found


def layout_accuracy(folder: Path, embedder: ImageEmbedder, expert: PatchCoreExpert, ks: list[int]) -> dict:
    references = [Image.open(p).convert("RGB") for p in sorted((folder / "train" / "good").glob("*.png"))[:4]]
    free = expert.fit(references).calibration.get("free", 0.0) > 0
    expert_box = strongest_box(expert, references)
    items = labelled_defects(folder)
    types = sorted({item.defect_type for item in items})
    exemplar_views: dict[Path, dict[str, list[RegionSignature]]] = {}
    queries: dict[tuple[str, Path], RegionSignature] = {}
    for item in items:
        image = Image.open(item.path).convert("RGB")
        marked = read_mask(item.mask)
        rot4 = view_signatures(embedder, image, marked, mirrors=False)
        flip8 = rot4 + view_signatures(embedder, image, marked, mirrors=True)[4:]
        exemplar_views[item.path] = {
            "shipped": rot4[:1],
            "rot4": rot4,
            "flip8": flip8,
            "rot4-free": rot4 if free else rot4[:1],
            "flip8-free": flip8 if free else rot4[:1],
        }
        queries[("mask", item.path)] = rot4[0]
        features = embedder.features(image)
        queries[("expert", item.path)] = expert_signature(features, image, *expert_box(image))
        assert box_of(marked) == mask_box(item.mask)
    out = {}
    for k in ks:
        rng = np.random.default_rng(0)
        right = {(side, variant): 0 for side in ("mask", "expert") for variant in VARIANTS}
        for item in items:
            draws = exemplar_draws(items, types, item, k, rng)
            for side in ("mask", "expert"):
                query = queries[(side, item.path)]
                for variant in VARIANTS:
                    best = {
                        kind: max(
                            signature_similarity(query, view)
                            for chosen_item in chosen
                            for view in exemplar_views[chosen_item.path][variant]
                        )
                        for kind, chosen in draws.items()
                    }
                    right[(side, variant)] += max(best, key=best.__getitem__) == item.defect_type
        out[k] = {key: value / len(items) for key, value in right.items()}
    return {"free": free, "by_k": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layouts", nargs="+", type=Path)
    parser.add_argument("--exemplars", type=int, nargs="+", default=[1, 3])
    args = parser.parse_args()
    torch.set_num_threads(2)
    embedder = ImageEmbedder("efficientnet-lite0")
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))

    def accuracy(folder: Path, ks: list[int]) -> tuple[str, dict]:
        found = layout_accuracy(folder, embedder, expert, ks)
        return (" (free)" if found["free"] else " (fixed)"), found["by_k"]

    report_layouts(args.layouts, accuracy, args.exemplars)


if __name__ == "__main__":
    main()
