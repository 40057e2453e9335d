"""Defect typing by labelled exemplars at two embedder input sides, on generated MVTec-layout folders.

    HF_HUB_OFFLINE=1 python benchmarks/typing_embed_size.py /tmp/gt11 --sizes 224,256

The layouts are those of `riad eval typing`'s generated rows (``write_mvtec_layout(folder,
categories=..., n_train=4, n_test_good=2, n_test_per_defect=4, seed=N)``, docs/results.md). For
each side, K = 1 and 3 exemplars per type, the query's region from the mask and from the expert's
strongest region against 4 train images (the same boxes for every side), one JSON line with the
mean top-1 accuracy over the layout's categories. Chose 256 px, the expert's input side, so that
one backbone pass of a query serves recognition, the expert and typing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from riad_agent.commands.eval_typing import _expert_box
from riad_agent.eval.typing_eval import BoxSource, ExpertBox, categories_of, evaluate_category
from riad_agent.products import ImageEmbedder


def layout_accuracies(
    folders: list[Path], embedder: ImageEmbedder, k: int, box: BoxSource, boxes: dict[Path, ExpertBox]
) -> list[tuple[str, float]]:
    """(category, top-1 accuracy) of each folder of a layout: K exemplars per type, the query's region
    by its mask or by the expert's box (``boxes``)."""
    accuracies = []
    for folder in folders:
        result = evaluate_category(folder, embedder, k, box, boxes[folder] if box == "expert" else None, 0)
        if result is not None:
            accuracies.append((folder.name, round(result.accuracy, 3)))
    return accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a generated MVTec-layout folder")
    parser.add_argument("--sizes", default="224,256", help="embedder input sides, comma-separated")
    parser.add_argument("--shots", type=int, default=4, help="references of the expert's boxes")
    args = parser.parse_args()
    folders = categories_of(args.data, None)
    boxes = {folder: _expert_box(folder, args.shots) for folder in folders}
    for size in (int(s) for s in args.sizes.split(",")):
        embedder = ImageEmbedder(image_size=size)
        for k in (1, 3):
            for box in ("mask", "expert"):
                started = time.time()
                accuracies = layout_accuracies(folders, embedder, k, box, boxes)
                mean = sum(a for _, a in accuracies) / len(accuracies)
                row = {"data": args.data.name, "size": size, "k": k, "box": box, "mean": round(mean, 3)}
                print(json.dumps({**row, "per_category": accuracies, "s": round(time.time() - started)}))


if __name__ == "__main__":
    main()
