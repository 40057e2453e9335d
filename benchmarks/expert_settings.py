"""Image and pixel AUROC of vision-expert settings on generated parts (licence-clean validation), as JSON.

    python benchmarks/expert_settings.py [--normal 21] [--defective 35] [--references 16]
        [--setting NAME=FIELD:VALUE,FIELD:VALUE ...]

Expert knobs are chosen here, on generated washers, fabrics and tiles with exact masks, and not on
the MVTec test images the goals are measured on. Each ``--setting`` overrides ``ExpertConfig``
fields (e.g. ``guided8=guide_radius:8``); without any, the settings compared for issue 4 run
(the map upsampling and the pose alignment). Per category and mean over the three.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from riad_agent.data.synthetic import CATEGORIES, DEFECTS, generate_sample
from riad_agent.eval.expert_metrics import auroc
from riad_agent.expert import ExpertConfig, FeatureConfig, PatchCoreExpert

DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "gaussian": {"guide_radius": 0, "align_reach": 0},
    "aligned": {"guide_radius": 0},
    "guided8": {"guide_radius": 8, "align_reach": 0},
    "guided16": {"guide_radius": 16, "align_reach": 0},
    "aligned+guided8": {"guide_radius": 8},
    "aligned+guided16": {"guide_radius": 16},
}


def parse_setting(text: str) -> tuple[str, dict[str, Any]]:
    """``name=field:value,field:value`` -> (name, overrides); values are parsed as JSON when they can be."""
    name, _, body = text.partition("=")
    overrides: dict[str, Any] = {}
    for pair in filter(None, body.split(",")):
        field, _, value = pair.partition(":")
        try:
            overrides[field] = json.loads(value)
        except json.JSONDecodeError:
            overrides[field] = value
    return name, overrides


def evaluate(
    overrides: dict[str, Any], category: str, normal: int, defective: int, references: int
) -> dict[str, float]:
    config = ExpertConfig(features=FeatureConfig(image_size=256), heatmap=False, **overrides)
    expert = PatchCoreExpert(config)
    bank = expert.fit([generate_sample(category, None, 10_000 + s).image for s in range(references)])
    samples = [generate_sample(category, None, 50_000 + s) for s in range(normal)]
    samples += [generate_sample(category, DEFECTS[s % len(DEFECTS)], 60_000 + s) for s in range(defective)]
    labels, scores, pixel_labels, pixel_scores = [], [], [], []
    for sample in samples:
        result = expert.analyse_with_bank(sample.image, bank)
        labels.append(sample.is_anomalous)
        scores.append(result.score)
        pixel_labels.append(sample.mask[::2, ::2].ravel())
        pixel_scores.append(result.pixel_scores[::2, ::2].ravel())
    return {
        "image_auroc": auroc(np.array(labels), np.array(scores)),
        "pixel_auroc": auroc(np.concatenate(pixel_labels), np.concatenate(pixel_scores)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--normal", type=int, default=21)
    parser.add_argument("--defective", type=int, default=35)
    parser.add_argument("--references", type=int, default=16)
    parser.add_argument("--setting", action="append", default=[], help="NAME=FIELD:VALUE,... (repeatable)")
    args = parser.parse_args()
    settings = dict(parse_setting(text) for text in args.setting) if args.setting else DEFAULT_SETTINGS
    report: dict[str, Any] = {"benchmark": "expert_settings", "categories": list(CATEGORIES), "settings": {}}
    for name, overrides in settings.items():
        rows = {c: evaluate(overrides, c, args.normal, args.defective, args.references) for c in CATEGORIES}
        mean = {
            key: float(np.mean([row[key] for row in rows.values()])) for key in ("image_auroc", "pixel_auroc")
        }
        report["settings"][name] = {"overrides": overrides, "per_category": rows, "mean": mean}
        print(f"{name}: image {mean['image_auroc']:.4f} pixel {mean['pixel_auroc']:.4f}", flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
