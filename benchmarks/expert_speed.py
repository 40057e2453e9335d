"""Milliseconds per image of the vision expert once the bank is built (CPU, 2 threads), as JSON.

    python benchmarks/expert_speed.py [--data DIR/CATEGORY] [--size 256] [--references 50] [--repeats 20]

Without ``--data`` it uses generated ``synthetic/washer`` samples (licence-clean). The bank build is
timed separately; per-image time covers preprocessing, features, nearest neighbours, smoothing,
regions and calibration (and the heatmap PNG unless ``--no-heatmap``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from PIL import Image

from riad_agent.data.synthetic import generate_sample
from riad_agent.expert import ExpertConfig, FeatureConfig, PatchCoreExpert


def _images(data: str | None, size: int, count: int) -> tuple[list[Image.Image], list[Image.Image]]:
    if data is None:
        refs = [generate_sample("synthetic/washer", None, seed=s, size=size).image for s in range(count)]
        queries = [
            generate_sample("synthetic/washer", d, seed=1000 + i, size=size).image
            for i, d in enumerate([None, "scratch", "hole", "stain", "bent"])
        ]
        return refs, queries
    folder = Path(data)
    refs = [Image.open(p).convert("RGB") for p in sorted((folder / "train" / "good").glob("*.png"))[:count]]
    queries = [Image.open(p).convert("RGB") for p in sorted((folder / "test").glob("*/*.png"))]
    return refs, queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="An MVTec category folder; default: synthetic washers.")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--references", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-heatmap", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    refs, queries = _images(args.data, args.size, args.references)
    expert = PatchCoreExpert(
        ExpertConfig(features=FeatureConfig(image_size=args.size), heatmap=not args.no_heatmap)
    )
    started = time.perf_counter()
    bank = expert.fit(refs)
    build_s = time.perf_counter() - started
    expert.analyse_with_bank(queries[0], bank)  # warm-up
    times = []
    for i in range(args.repeats):
        tick = time.perf_counter()
        result = expert.analyse_with_bank(queries[i % len(queries)], bank)
        result.heatmap()  # the PNG is rendered on request; count it when the heatmap is on
        times.append(1000.0 * (time.perf_counter() - tick))
    print(
        json.dumps(
            {
                "benchmark": "expert_speed",
                "backbone": expert.backbone_id,
                "image_size": args.size,
                "threads": args.threads,
                "references": len(refs),
                "bank_patches": len(bank),
                "bank_build_s": round(build_s, 2),
                "ms_per_image_median": round(statistics.median(times), 1),
                "ms_per_image_p90": round(sorted(times)[int(0.9 * (len(times) - 1))], 1),
                "ms_per_image_mean": round(statistics.fmean(times), 1),
                "repeats": args.repeats,
                "heatmap": not args.no_heatmap,
                "data": args.data or "synthetic/washer",
                "cpu": platform.processor() or platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
