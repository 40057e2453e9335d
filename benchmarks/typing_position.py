"""Probe: does where a defect lies on its part (edge, inner edge, centre, inside) help type it?

    HF_HUB_OFFLINE=1 python benchmarks/typing_position.py /tmp/gt11 /tmp/gt23 --weights 0.5 1.0

A region's words (``products.embedding.words_vector``: shape, contrast, size, elongation, fill)
carry no place. Here the describer's ``position`` joins them as a one-hot of weight w (before the
vector is set to unit length); w = 0 is the shipped vector. The same leave-one-out and exemplar
draws as ``riad eval typing``, K = 1 and 3 exemplars per type, the query's region by its mask and by
the expert's strongest region against 4 train images. Generated layouts (``write_mvtec_layout(folder,
categories=..., n_train=4, n_test_good=2, n_test_per_defect=4, seed=N)``) choose; one JSON line per
layout, variant, K and box with the mean top-1 accuracy over the layout's categories.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from typing_embed_size import layout_accuracies  # benchmarks/ is on the path when run as a script

import riad_agent.products.embedding as embedding
from riad_agent.commands.eval_typing import _expert_box
from riad_agent.eval.typing_eval import categories_of
from riad_agent.products import ImageEmbedder
from riad_agent.schemas import DescribedRegion

POSITIONS = ("centre", "edge", "inner edge", "inside")
SHIPPED = embedding.words_vector


def placed_words(weight: float) -> Callable[[DescribedRegion | None], np.ndarray]:
    """The shipped words vector with the region's position one-hot (times ``weight``) appended."""

    def words(region: DescribedRegion | None) -> np.ndarray:
        base = SHIPPED(region)
        if region is None:
            return np.zeros(len(base) + len(POSITIONS), dtype=np.float32)
        place = np.asarray([weight * float(region.position == p) for p in POSITIONS], dtype=np.float32)
        vector = np.concatenate([base, place])
        return vector / max(float(np.linalg.norm(vector)), 1e-9)

    return words


def cached_box(box: Callable[[Image.Image], Any]) -> Callable[[Image.Image], Any]:
    """The expert's box of an image, computed once per image content."""
    found: dict[bytes, Any] = {}

    @functools.wraps(box)
    def of(image: Image.Image) -> Any:
        key = hashlib.blake2b(image.tobytes(), digest_size=16).digest()
        if key not in found:
            found[key] = box(image)
        return found[key]

    return of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layouts", type=Path, nargs="+", help="generated MVTec-layout folders")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--shots", type=int, default=4, help="references of the expert's boxes")
    args = parser.parse_args()
    embedding.RECENT_FEATURES = 4096  # every image's maps kept: the variants share one pass per image
    embedder = ImageEmbedder()
    for layout in args.layouts:
        folders = categories_of(layout, None)
        boxes = {folder: cached_box(_expert_box(folder, args.shots)) for folder in folders}
        for weight in [0.0, *args.weights]:
            embedding.words_vector = SHIPPED if weight == 0 else placed_words(weight)  # type: ignore[assignment]
            for k in (1, 3):
                for box in ("mask", "expert"):
                    accuracies = layout_accuracies(folders, embedder, k, box, boxes)
                    mean = sum(a for _, a in accuracies) / len(accuracies)
                    row = {"data": layout.name, "w": weight, "k": k, "box": box, "mean": round(mean, 4)}
                    print(json.dumps({**row, "per_category": accuracies}), flush=True)
        embedding.words_vector = SHIPPED


if __name__ == "__main__":
    main()
