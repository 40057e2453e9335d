"""How well the expert's strongest region boxes a generated defect, for a region rule (choose on generated data).

For every generated category (the three of ``CATEGORIES`` and the pose products), ``--refs`` normal
references and ``--seeds`` images of every defect type: the strongest region of the anomaly map under
``find_regions`` (``max_share`` = the largest share of the image one region may cover before it is
re-cut at a higher level; 1.0 = never), against the defect's mask. Prints, per category and overall,
the share of strongest boxes that touch the mask, the mean IoU of box and mask box, and the mean share
of the image the box covers.

    .venv/bin/python benchmarks/region_boxes.py --max-share 1.0 0.25 0.15
"""

from __future__ import annotations

import argparse

import numpy as np

from riad_agent.data.synthetic import CATEGORIES, DEFECTS, POSE_CATEGORIES, generate_sample
from riad_agent.expert import regions as region_rules
from riad_agent.expert.calibration import Calibration
from riad_agent.expert.expert import PatchCoreExpert
from riad_agent.expert.regions import find_regions


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-share", type=float, nargs="+", default=[1.0, 0.25])
    parser.add_argument("--recut-level", type=float, default=region_rules.RECUT_LEVEL)
    args = parser.parse_args()
    region_rules.RECUT_LEVEL = args.recut_level
    expert = PatchCoreExpert()
    categories = list(CATEGORIES) + list(POSE_CATEGORIES)
    totals: dict[float, list[tuple[float, float, float]]] = {share: [] for share in args.max_share}
    for category in categories:
        references = [generate_sample(category, None, 1000 + i).image for i in range(args.refs)]
        bank = expert.fit(references)
        cal = bank.calibration
        pixel_cal = Calibration(cal["pixel_threshold"], cal["pixel_scale"], "", 0)
        rows: dict[float, list[tuple[float, float, float]]] = {share: [] for share in args.max_share}
        for defect in DEFECTS:
            for seed in range(args.seeds):
                try:
                    sample = generate_sample(category, defect, 50 + seed)
                except ValueError:
                    break
                mask = np.asarray(sample.mask, dtype=bool)
                if not mask.any():
                    continue
                ys, xs = np.nonzero(mask)
                truth = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
                anomaly = expert.analyse_with_bank(sample.image, bank)
                for share in args.max_share:
                    regions = find_regions(
                        anomaly.pixel_scores, pixel_cal.threshold, pixel_cal, 16, max_share=share
                    )
                    if not regions:
                        rows[share].append((0.0, 0.0, 0.0))
                        continue
                    top = max(regions, key=lambda r: r.score)
                    box = (top.x0, top.y0, top.x1, top.y1)
                    touches = float(mask[top.y0 : top.y1, top.x0 : top.x1].any())
                    area = (top.x1 - top.x0) * (top.y1 - top.y0) / mask.size
                    rows[share].append((touches, _iou(box, truth), area))
        for share, values in rows.items():
            arr = np.asarray(values)
            totals[share].extend(values)
            print(
                f"{category:28s} max_share {share:4.2f}: touches {arr[:, 0].mean():.3f}  IoU {arr[:, 1].mean():.3f}  "
                f"box share {arr[:, 2].mean():.3f}  (n={len(arr)})"
            )
    for share, values in totals.items():
        arr = np.asarray(values)
        print(
            f"ALL max_share {share:4.2f}: touches {arr[:, 0].mean():.3f}  IoU {arr[:, 1].mean():.3f}  "
            f"box share {arr[:, 2].mean():.3f}  (n={len(arr)})"
        )


if __name__ == "__main__":
    main()
