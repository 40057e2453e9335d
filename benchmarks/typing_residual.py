"""Typing a defect by what changed: a region's cells, or their difference from the nearest normal cell?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/typing_residual.py LAYOUT [LAYOUT ...] [--exemplars 1 3]
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/typing_residual.py --build-train /tmp/train_types

The product memory types a region by its cells' EfficientNet-Lite0 features (s8, s16) against each
exemplar's (``signature_similarity``). On real parts a bent and a cut lead are both "lead and board"
cells; what tells them apart is what differs from a normal part there. Here each cell also gets a
*residual*: its unit feature minus the nearest cell of the references' same layer (any place),
normalised. Sides compared, leave-one-out over each layout's labelled defects, exemplars by mask,
the query by mask (``mask``) or by the expert's strongest region against 4 references (``expert``),
the same seeded exemplar draws for every variant:
``cells`` (shipped), ``resid`` (residual cells instead), ``both`` (the mean of the two cell
similarities); every variant mixes in the describer's words at the shipped weight.

``--build-train DIR`` writes a tuning layout from MVTec *train/good* images only (no test image): 4
references per category and, on other train images, 4 defects per type with their masks: transistor
``bent`` (a strip of the leads moved sideways) and ``cut`` (a piece of a lead painted over with the board
colour), both ``structural_probe.py``'s at 256 px, ``stain`` and ``scratch`` (painted, ``fewshot.py``); hazelnut ``cut`` and painted ``crack``,
``hole``, ``colour``. Derived from CC BY-NC-SA images: keep it under /tmp, never in the repo.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent / "few_shot"))
from fewshot import MVTEC, painted_train_defect
from structural_probe import structural_with_mask

from riad_agent.eval.typing_eval import labelled_defects, mask_box, read_mask, strongest_box
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.products import ImageEmbedder
from riad_agent.products.embedding import (
    CELL_LAYERS,
    MAP_SHARE,
    MASK_SHARE,
    WORDS_WEIGHT,
    ImageFeatures,
    _best_matches,
    describe_box,
    words_vector,
)

TRAIN_TYPES = {
    "transistor": ("bent", "cut", "stain", "scratch"),
    "hazelnut": ("cut", "crack", "hole", "colour"),
}
VARIANTS = ("cells", "resid", "both")


def build_train_layout(out: Path, per_type: int = 4, shots: int = 4) -> None:
    """An MVTec-layout tuning folder from train/good images (see the module docstring)."""
    for cat, types in TRAIN_TYPES.items():
        paths = sorted((MVTEC / cat / "train" / "good").glob("*.png"))
        order = np.random.default_rng(4242).permutation(len(paths))
        good = out / cat / "train" / "good"
        good.mkdir(parents=True, exist_ok=True)
        for i in order[:shots]:
            Image.open(paths[i]).convert("RGB").save(good / paths[i].name)
        rest = [paths[i] for i in order[shots:]]
        for t, kind in enumerate(types):
            (out / cat / "test" / kind).mkdir(parents=True, exist_ok=True)
            (out / cat / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
            for j in range(per_type):
                source = Image.open(rest[t * per_type + j]).convert("RGB")
                rng = np.random.default_rng([t, j, 7])
                if kind in ("bent", "cut"):
                    image, mask = structural_with_mask(source, kind, rng)
                else:
                    image, mask = painted_train_defect(source, 97 * t + j, kind)
                image.save(out / cat / "test" / kind / f"{j:03d}.png")
                Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255).save(
                    out / cat / "ground_truth" / kind / f"{j:03d}_mask.png"
                )
        print(f"{cat}: {len(types)} types x {per_type} defects, {shots} references -> {out / cat}")


class Signature:
    """A region's unit cells and residual cells per layer, and its words' vector."""

    def __init__(self, cells: list[np.ndarray], resid: list[np.ndarray], words: np.ndarray) -> None:
        self.cells, self.resid, self.words = cells, resid, words

    def similarity(self, other: Signature, variant: str) -> float:
        cells = float(np.mean([_best_matches(q, e) for q, e in zip(self.cells, other.cells, strict=True)]))
        resid = float(np.mean([_best_matches(q, e) for q, e in zip(self.resid, other.resid, strict=True)]))
        look = {"cells": cells, "resid": resid, "both": 0.5 * (cells + resid)}[variant]
        return (1.0 - WORDS_WEIGHT) * look + WORDS_WEIGHT * float(self.words @ other.words)


def reference_cells(embedder: ImageEmbedder, references: list[Image.Image]) -> list[np.ndarray]:
    """Per layer of CELL_LAYERS, every reference cell's unit vector, (n, C)."""
    out = []
    maps = [embedder.features(ref).maps for ref in references]
    for index in CELL_LAYERS:
        rows = [m[min(index, len(m) - 1)][0].float().flatten(1).T for m in maps]
        stacked = torch.nn.functional.normalize(torch.cat(rows), dim=1)
        out.append(stacked.numpy().astype(np.float32))
    return out


def residuals(cells: list[np.ndarray], normal: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for c, n in zip(cells, normal, strict=True):
        if not len(c):
            out.append(c)
            continue
        nearest = n[(c @ n.T).argmax(axis=1)]
        r = c - nearest
        out.append((r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-6)).astype(np.float32))
    return out


def signature(features: ImageFeatures, box, words, weights, share, normal) -> Signature:
    cells = features.region_cells(box, weights, share)
    return Signature(cells, residuals(cells, normal), words_vector(words))


def exemplar_draws(items: list, types: list[str], item, k: int, rng: np.random.Generator) -> dict[str, list]:
    """Per type, ``k`` labelled defects other than ``item`` drawn by ``rng`` (the leave-one-out exemplars);
    also used by ``typing_views.py``, so both probes draw the same ones."""
    draws = {}
    for kind in types:
        pool = [other for other in items if other.defect_type == kind and other.path != item.path]
        draws[kind] = [pool[i] for i in rng.permutation(len(pool))[:k]]
    return draws


def layout_accuracy(folder: Path, embedder, expert, ks: list[int]) -> dict:
    references = [Image.open(p).convert("RGB") for p in sorted((folder / "train" / "good").glob("*.png"))[:4]]
    normal = reference_cells(embedder, references)
    box_of = strongest_box(expert, references)
    items = labelled_defects(folder)
    types = sorted({item.defect_type for item in items})
    by_mask, by_expert = {}, {}
    for item in items:
        image = Image.open(item.path).convert("RGB")
        features = embedder.features(image)
        marked, box = read_mask(item.mask), mask_box(item.mask)
        by_mask[item.path] = signature(
            features, box, describe_box(image, marked, box, refine=False), marked, MASK_SHARE, normal
        )
        ebox, values, prior = box_of(image)
        by_expert[item.path] = signature(
            features, ebox, describe_box(image, values, ebox, refine=True), prior, MAP_SHARE, normal
        )
    out = {}
    for k in ks:
        rng = np.random.default_rng(0)
        right = {(q, v): 0 for q in ("mask", "expert") for v in VARIANTS}
        for item in items:
            draws = exemplar_draws(items, types, item, k, rng)
            for qside, queries in (("mask", by_mask), ("expert", by_expert)):
                for variant in VARIANTS:
                    best = {
                        kind: max(queries[item.path].similarity(by_mask[c.path], variant) for c in chosen)
                        for kind, chosen in draws.items()
                    }
                    right[(qside, variant)] += max(best, key=best.__getitem__) == item.defect_type
        out[k] = {key: value / len(items) for key, value in right.items()}
    return out


def report_layouts(layouts: list[Path], accuracy, ks: list[int]) -> None:
    """Print each category's row and the means per layout: ``accuracy(folder, ks)`` returns
    ``(label, {k: {(query side, variant): top-1 accuracy}})``; also used by ``typing_views.py``."""
    totals: dict = {}
    for layout in layouts:
        for folder in sorted(p for p in layout.iterdir() if (p / "test").is_dir()):
            label, found = accuracy(folder, ks)
            for k, row in found.items():
                text = "  ".join(f"{q}/{v} {acc:.3f}" for (q, v), acc in row.items())
                print(f"{layout.name}/{folder.name}{label} K={k}: {text}", flush=True)
                for key, acc in row.items():
                    totals.setdefault((layout.name, k, *key), []).append(acc)
    print("\nmean over categories:")
    for (name, k, q, v), accs in sorted(totals.items()):
        print(f"  {name:14s} K={k} query {q:6s} {v:10s} {np.mean(accs):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("layouts", nargs="*", type=Path)
    parser.add_argument("--exemplars", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--build-train", type=Path, default=None)
    args = parser.parse_args()
    if args.build_train is not None:
        build_train_layout(args.build_train)
        return
    torch.set_num_threads(2)
    embedder = ImageEmbedder("efficientnet-lite0")
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    report_layouts(
        args.layouts, lambda folder, ks: ("", layout_accuracy(folder, embedder, expert, ks)), args.exemplars
    )


if __name__ == "__main__":
    main()
