"""How much a verdict depends on which few references a user has: a train split, draw by draw.

    HF_HUB_OFFLINE=1 python benchmarks/few_shot/reference_draws.py \
        --train ../shared/data/mvtec_subset/transistor/train/good --shots 4 --starts 0 4 8 12

For each start s, the references are the train images s .. s + shots - 1 (sorted by name) and every
other train image is scored against them with the default expert: the share of these normal parts
called anomalous (over the uncertain band), the share uncertain, and the median calibrated score.
Train splits only, so it chooses nothing on a test set. One JSON line per draw.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.schemas import UNCERTAIN_BAND


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="a folder of normal images")
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--starts", type=int, nargs="+", default=[0, 4, 8, 12])
    args = parser.parse_args()
    files = sorted(args.train.glob("*.png"))
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    for start in args.starts:
        chosen = range(start, start + args.shots)
        references = [Image.open(files[i]).convert("RGB") for i in chosen]
        scores = np.array(
            [
                expert.analyse(Image.open(f).convert("RGB"), references).score
                for i, f in enumerate(files)
                if i not in chosen
            ]
        )
        row = {
            "references": [files[i].name for i in chosen],
            "normal_parts": len(scores),
            "called_anomalous": round(float(np.mean(scores > 0.5 + UNCERTAIN_BAND)), 3),
            "uncertain": round(float(np.mean(np.abs(scores - 0.5) <= UNCERTAIN_BAND)), 3),
            "median_score": round(float(np.median(scores)), 3),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
