"""Whole-graph wall time of a default inspection (the reasoner only when needed) against one that always reasons.

    RIAD_DATA_DIR=/tmp/x python benchmarks/default_inspection.py [--images 10] [--size 256] [--steps 10] \
        [--versus '{"perturbations": 8}']

Generated washers (half with a defect), 4 generated references, the embedded defaults (expert, MiniLM
knowledge, builtin reasoner), one warm `Inspector`; the two settings alternate image by image, so both
see the same machine. Prints the median and the 90th percentile of each, in seconds, and the median
of each stage of the inspections that always reason, in milliseconds, and the language model's
precision (``RIAD_DTYPE``: float32, bfloat16 or int8), as JSON. ``--versus`` adds a
third setting: always reasoning with those :class:`~riad_agent.reasoning.config.LatentConfig`
overrides (same inspector, same model), alternating with the others, and the median ratio of its
time to the shipped setting's, image by image.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from riad_agent.data.synthetic import generate_sample
from riad_agent.inspector import Inspector
from riad_agent.schemas import InspectionRequest


def write_references(root: Path, size: int = 256, count: int = 4) -> list[str]:
    """``count`` generated normal washers written under ``root`` (the benchmarks' references), their paths."""
    paths = []
    for index in range(count):
        path = root / f"ref{index}.png"
        generate_sample("synthetic/washer", None, 500 + index, size).image.save(path)
        paths.append(str(path))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--versus", type=json.loads, default=None, help="LatentConfig overrides (JSON)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="riad-default-") as tmp:
        root = Path(tmp)
        references = write_references(root, args.size)
        images = []
        for index in range(args.images):
            path = root / f"part{index}.png"
            defect = "scratch" if index % 2 else None
            generate_sample("synthetic/washer", defect, 700 + index, args.size).image.save(path)
            images.append(str(path))
        inspector = Inspector()
        reasoner: Any = inspector.components.reasoner.get()  # LatentReasoner in process: has .config
        shipped = getattr(reasoner, "config", None)
        versus = None
        if args.versus is not None:
            if shipped is None:
                raise SystemExit("--versus needs the in-process reasoner (no RIAD_REASONER_URL)")
            versus = shipped.model_validate({**shipped.model_dump(), **args.versus})

        stages: dict[str, list[float]] = {}

        def inspect(image: str, setting: str) -> tuple[float, bool]:
            when = "needed" if setting == "needed" else "always"
            if versus is not None:
                reasoner.config = versus if setting == "versus" else shipped
            request = InspectionRequest.model_validate(
                {
                    "image": image,
                    "category": "washer",
                    "references": references,
                    "options": {"latent_steps": args.steps, "reasoner_when": when},
                }
            )
            started = time.perf_counter()
            report = inspector.inspect(request)
            elapsed = time.perf_counter() - started
            if setting == "always":
                for stage, ms in report.timings_ms.items():
                    stages.setdefault(stage, []).append(ms)
            return elapsed, report.trace is not None

        inspect(images[0], "always")  # warm-up: model, bank, knowledge store
        stages.clear()
        settings = ("needed", "always", "versus") if versus is not None else ("needed", "always")
        times: dict[str, list[float]] = {setting: [] for setting in settings}
        reasoned = 0
        for image in images:
            for setting in settings:
                seconds, ran = inspect(image, setting)
                times[setting].append(seconds)
                reasoned += ran and setting == "needed"
        result: dict[str, object] = {
            setting: {"median_s": float(np.median(v)), "p90_s": float(np.percentile(v, 90)), "n": len(v)}
            for setting, v in times.items()
        }
        if versus is not None:
            ratios = np.array(times["versus"]) / np.array(times["always"])
            result["versus"] = {**result["versus"], "overrides": args.versus}  # type: ignore[dict-item]
            result["versus_over_always_median"] = float(np.median(ratios))
        result["precision"] = getattr(getattr(reasoner, "vlm", None), "precision", "unknown")
        result["needed_reasoned"] = {"images": reasoned, "of": len(images)}
        result["always_stage_median_ms"] = {stage: round(float(np.median(v))) for stage, v in stages.items()}
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
