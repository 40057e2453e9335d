"""Typing of the expert's strongest region for several region-share rules, on a generated MVTec-layout folder.

    [RECUT_LEVEL=0.3] .venv/bin/python benchmarks/typing_region_share.py LAYOUT EXEMPLARS SHARE [SHARE ...]

LAYOUT comes from ``riad_agent.data.synthetic.write_mvtec_layout`` (never MVTec's test images); for each
``ExpertConfig.max_region_share`` the leave-one-out typing accuracy per category with the query's box from the
expert against 4 train references (``riad eval typing --box expert`` with that one setting changed).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from riad_agent.eval.typing_eval import categories_of, evaluate_category, strongest_box
from riad_agent.expert import ExpertConfig, PatchCoreExpert, regions
from riad_agent.products import ImageEmbedder


def main() -> None:
    data, exemplars, shares = Path(sys.argv[1]), int(sys.argv[2]), [float(x) for x in sys.argv[3:]]
    level = os.environ.get("RECUT_LEVEL")
    if level is not None:  # where a too-wide region is cut again (riad_agent.expert.regions.RECUT_LEVEL)
        regions.RECUT_LEVEL = float(level)
    embedder = ImageEmbedder()
    for share in shares:
        results = []
        for folder in categories_of(data, None):
            references = [
                Image.open(p).convert("RGB") for p in sorted((folder / "train" / "good").glob("*.png"))[:4]
            ]
            box_of = strongest_box(
                PatchCoreExpert(ExpertConfig(heatmap=False, max_region_share=share)), references
            )
            result = evaluate_category(folder, embedder, exemplars, "expert", box_of)
            if result is not None:
                results.append((folder.name, round(result.accuracy, 3)))
        mean = float(np.mean([accuracy for _, accuracy in results]))
        print(f"max_region_share {share}: {results} mean {mean:.3f}", flush=True)


if __name__ == "__main__":
    main()
