"""How often the region describer's words match generated defects' ground truth, and its time per call.

    python benchmarks/describe_check.py [--seeds 20] [--size 256] [--expert 0] [--mvtec PATH]

The ground-truth mask of each generated defect is the "anomaly map" and its box the region, so the
describer (riad_agent/expert/describe.py) is checked apart from the expert. Expected words:
- shape: scratch, crack -> elongated; hole, stain, colour -> compact (missing_piece, bent: not scored);
- contrast: scratch -> brighter, crack, hole -> darker, colour -> colour shift; stain and missing_piece
  -> what was painted (the defect's median L* / a*b* against the same pixels of the normal image of the
  same seed, by the describer's own rule); bent not scored;
- side and position: those the describer gives with the generator's true part mask (``mask=``) in
  place of its own estimate, so these rows check the part mask; and two fixed expectations:
  missing_piece and bent on the objects (washer, bracket, bracket-loose) -> "edge" or "inner edge"
  (the bracket's holes and notch are edges too: ``edge_on_objects``), hole, stain and colour on the washer -> "inside" (``inside_on_washer``);
- area: the percentage of the part within 10 % (relative) of the truth (mask over the true support);
  area_2x: within a factor of 2 of it.
The `reference` rows compare with the nearest of 5 normal references (fixed-pose categories only).
`--expert N` also runs PatchCoreExpert (16 references) on N seeds per category and defect and scores
the same words on its pixel map and regions (slow: torch on CPU). `--mvtec` prints the descriptions
of the real masks of an MVTec-layout folder for reading.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from riad_agent.data.synthetic import _RENDERERS, CATEGORY_POSE, DEFECTS, generate_sample
from riad_agent.expert.describe import (
    _judge_contrast,
    _to_lab,
    describe_regions,
    nearest_reference,
    part_mask,
)
from riad_agent.schemas import Region

CATEGORIES = (
    "synthetic/washer",
    "synthetic/fabric",
    "synthetic/tile",
    "synthetic/bracket",
    "synthetic/bracket-loose",
)
SHAPE = {
    "scratch": "elongated",
    "crack": "elongated",
    "hole": "compact",
    "stain": "compact",
    "colour": "compact",
}
OBJECTS = ("synthetic/washer", "synthetic/bracket", "synthetic/bracket-loose")
CONTRAST = {"scratch": "brighter", "crack": "darker", "hole": "darker", "colour": "colour shift"}


def true_support(category: str, seed: int, size: int) -> np.ndarray:
    """The generator's own part mask (private renderer: the exact truth)."""
    return _RENDERERS[category](np.random.default_rng([seed, 0]), size).support


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def painted_contrast(defective: Image.Image, normal: Image.Image, mask: np.ndarray) -> str:
    after = _to_lab(np.asarray(defective)[mask])
    before = _to_lab(np.asarray(normal)[mask])
    return _judge_contrast(after, before, 0.0)[0]


def score_one(
    tally: dict[str, list[int]],
    description: Any,
    defect: str,
    sample: Any,
    normal: Image.Image,
    support: np.ndarray,
) -> list[str]:
    """Count matches of the strongest region's words; returns the names that missed."""
    region = description.regions[0]
    truth = describe_regions(
        sample.image, sample.mask.astype(np.float32), [region_of(sample.mask)], mask=support
    ).regions[0]
    missed = []

    def count(name: str, ok: bool) -> None:
        tally[name][0] += int(ok)
        tally[name][1] += 1
        if not ok:
            missed.append(name)

    if defect in SHAPE:
        count("shape", region.shape == SHAPE[defect])
    if defect != "bent":
        expected = CONTRAST.get(defect) or painted_contrast(sample.image, normal, sample.mask)
        count("contrast", region.contrast == expected)
    count("side", region.side == truth.side)
    count("position", region.position == truth.position)
    if sample.category in OBJECTS and defect in ("missing_piece", "bent"):
        count("edge_on_objects", region.position in ("edge", "inner edge"))
    if sample.category == "synthetic/washer" and defect in ("hole", "stain", "colour"):
        count("inside_on_washer", region.position == "inside")
    pct = 100.0 * sample.mask.sum() / support.sum()
    count("area", abs(region.area_pct_of_part - pct) <= 0.1 * pct)
    count("area_2x", 0.5 * pct <= region.area_pct_of_part <= 2.0 * pct)
    return missed


def region_of(mask: np.ndarray) -> Region:
    x0, y0, x1, y1 = box_of(mask)
    return Region(x0=x0, y0=y0, x1=x1, y1=y1, score=1.0, area=int(mask.sum()))


def ground_truth_rows(seeds: int, size: int) -> tuple[dict[str, Any], list[float], list[str]]:
    tallies: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    times: list[float] = []
    misses: list[str] = []
    for category in CATEGORIES:
        refs = [generate_sample(category, None, 10_000 + s, size).image for s in range(5)]
        for defect in DEFECTS:
            for seed in range(seeds):
                sample = generate_sample(category, defect, seed, size)
                normal = generate_sample(category, None, seed, size).image
                support = true_support(category, seed, size)
                region = region_of(sample.mask)
                heat = sample.mask.astype(np.float32)
                start = time.perf_counter()
                description = describe_regions(sample.image, heat, [region])
                times.append(1000 * (time.perf_counter() - start))
                bad = score_one(tallies[defect], description, defect, sample, normal, support)
                if bad:
                    misses.append(f"{category} {defect} {seed} {bad}: {description.sentence()}")
                if CATEGORY_POSE[category] == "fixed":
                    reference = nearest_reference(sample.image, refs)
                    with_ref = describe_regions(sample.image, heat, [region], reference=reference)
                    score_one(tallies[f"{defect} (reference)"], with_ref, defect, sample, normal, support)
    table = {
        defect: {name: f"{ok}/{n} ({100 * ok / n:.0f} %)" for name, (ok, n) in sorted(counts.items())}
        for defect, counts in tallies.items()
    }
    return table, times, misses


def expert_rows(seeds: int, size: int) -> dict[str, Any]:
    from riad_agent.expert import ExpertConfig, PatchCoreExpert

    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    tallies: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for category in CATEGORIES:
        bank = expert.fit([generate_sample(category, None, 10_000 + s, size).image for s in range(16)])
        for defect in DEFECTS:
            for seed in range(seeds):
                sample = generate_sample(category, defect, 20_000 + seed, size)
                normal = generate_sample(category, None, 20_000 + seed, size).image
                anomaly = expert.analyse_with_bank(sample.image, bank)
                if not anomaly.regions:
                    tallies[defect]["found"][1] += 1
                    continue
                tallies[defect]["found"][0] += 1
                tallies[defect]["found"][1] += 1
                description = describe_regions(sample.image, anomaly.pixel_scores, anomaly.regions)
                score_one(
                    tallies[defect],
                    description,
                    defect,
                    sample,
                    normal,
                    true_support(category, 20_000 + seed, size),
                )
    return {
        defect: {name: f"{ok}/{n} ({100 * ok / n:.0f} %)" for name, (ok, n) in sorted(counts.items())}
        for defect, counts in tallies.items()
    }


def mvtec_lines(root: Path) -> list[str]:
    lines = []
    for mask_path in sorted(root.glob("*/ground_truth/*/*_mask.png")):
        category, defect = mask_path.parts[-4], mask_path.parts[-2]
        image_path = root / category / "test" / defect / mask_path.name.replace("_mask", "")
        image = Image.open(image_path).convert("RGB")
        mask = np.asarray(Image.open(mask_path).convert("L").resize(image.size)) > 127
        if not mask.any():
            continue
        x0, y0, x1, y1 = box_of(mask)
        region = Region(x0=x0, y0=y0, x1=x1, y1=y1, score=1.0, area=int(mask.sum()))
        description = describe_regions(image, mask.astype(np.float32), [region])
        cover = float(part_mask(image).mean())
        lines.append(
            f"{category}/{defect}/{image_path.name} (part {100 * cover:.0f} % of image): {description.sentence()}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--expert", type=int, default=0)
    parser.add_argument("--mvtec", type=Path, default=None)
    parser.add_argument("--misses", action="store_true", help="print every miss of the ground-truth rows")
    args = parser.parse_args()
    table, times, misses = ground_truth_rows(args.seeds, args.size)
    report: dict[str, Any] = {
        "benchmark": "describe_check",
        "size": args.size,
        "seeds": args.seeds,
        "ground_truth": table,
        "ms_per_call": {
            "best": round(float(np.min(times)), 2),
            "median": round(float(np.median(times)), 2),
            "p90": round(float(np.percentile(times, 90)), 2),
            "calls": len(times),
        },
    }
    if args.expert:
        report["expert"] = expert_rows(args.expert, args.size)
    print(json.dumps(report, indent=1))
    if args.misses:
        print("\n".join(misses))
    if args.mvtec is not None:
        print("\n".join(mvtec_lines(args.mvtec)))


if __name__ == "__main__":
    main()
