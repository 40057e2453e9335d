"""Fixed-pose parts: how far may the references' jittered copies shift? (train splits and generated parts)

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/few_shot/jitter_probe.py --draws 8

A fixed-pose bank holds each reference and 3 jittered copies (``expert.JITTER_PLAN``: turns of up to
2 degrees, shifts of ``amplitude`` x the side). Shipped: 1.2 %. A fixtured line's parts may lie further apart
than that (the MVTec transistor's body top lies 17-55 px down a 256 px image across its train split),
so four references that happen to agree flag the parts that sit lower. Variants: ``shipped``,
``fixedA`` (the plan with amplitude A for every bank) and ``randomK`` (the recipe before the plan: a
seeded random draw of +-3 degrees, +-1.2 % shifts and a brightness change, seed = K + the reference's
content hash). Each line also gives the spread of the references' own part
centroids (the part = pixels far from the border colour; the larger of the x and y ranges, a fraction
of the side), the measure a tolerance learned from the references would read. Data: the queries of
``structural_probe.py`` (train transistors: 12 normal, 8 painted defects, 12 structural ones turned /
shifted / bent / cut; the generated fixtured bracket: 12 normal, 16 generated defects with
``misplaced``), each draw's 4 references. Each variant scores with the shipped expert end to end.
One JSON line per variant and data: image AUROC, verdict balanced accuracy at the shipped band, the
share of normal parts called anomalous, and of each defect kind flagged; means over draws.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from structural_probe import datasets

import riad_agent.expert.expert as expert_module
from riad_agent.eval.expert_eval import verdict_balanced_accuracy
from riad_agent.eval.expert_metrics import image_auroc
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.expert.bank import image_digest
from riad_agent.expert.pose import border_fill
from riad_agent.schemas import UNCERTAIN_BAND

SHIPPED_JITTER = expert_module._jittered_views
SHIPPED_AMPLITUDE = 0.012


def part_centroid(image: Image.Image, side: int = 128) -> tuple[float, float]:
    """(x, y) of the part's centroid as fractions of the side: pixels far from the border's colour."""
    pixels = np.asarray(
        image.convert("RGB").resize((side, side), Image.Resampling.BILINEAR), dtype=np.float64
    )
    border = np.median(np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]), axis=0)
    support = ndimage.gaussian_filter(np.abs(pixels - border).sum(-1), 2) > 60
    ys, xs = np.nonzero(support)
    if not len(xs):
        return 0.5, 0.5
    return float(xs.mean()) / side, float(ys.mean()) / side


def centroid_spread(images: Sequence[Image.Image]) -> float:
    """The larger of the references' centroid ranges in x and y, as a fraction of the side."""
    points = np.array([part_centroid(image) for image in images])
    return float((points.max(axis=0) - points.min(axis=0)).max())


def jitter_with(amplitude: float) -> Callable[..., list[Image.Image]]:
    """``expert._jittered_views`` with its shift amplitude set to ``amplitude`` (fraction of the side)."""
    return functools.partial(SHIPPED_JITTER, shift=amplitude)


def random_jitter(offset: int) -> Callable[..., list[Image.Image]]:
    """The jitter before ``JITTER_PLAN``: each copy a seeded random turn, shift and brightness change."""

    def views(
        image: Image.Image, size: int, count: int, shift: float = SHIPPED_AMPLITUDE
    ) -> list[Image.Image]:
        rng = np.random.default_rng(offset + int(image_digest(image)[:8], 16))
        base = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        out = []
        for _ in range(count):
            angle = float(rng.uniform(-3.0, 3.0))
            dx, dy = (float(v) for v in rng.uniform(-shift, shift, size=2) * size)
            view = base.rotate(
                angle, Image.Resampling.BICUBIC, translate=(dx, dy), fillcolor=border_fill(base)
            )  # type: ignore[arg-type]
            out.append(expert_module._augmented_views(view, size, int(rng.integers(1 << 30)), count=1)[0])
        return out

    return views


def jitter_of(variant: str) -> tuple[float, Callable[..., list[Image.Image]]]:
    """(shift amplitude, the jitter function) of a variant name."""
    if variant.startswith("random"):
        return SHIPPED_AMPLITUDE, random_jitter(int(variant.removeprefix("random") or 0))
    amplitude = SHIPPED_AMPLITUDE if variant == "shipped" else float(variant.removeprefix("fixed"))
    return amplitude, jitter_with(amplitude)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--variants", nargs="+", default=["shipped", "fixed0.03", "fixed0.05"])
    parser.add_argument("--only", nargs="*", default=["transistor", "bracket"])
    args = parser.parse_args()
    sets = list(datasets(args.shots, args.draws, args.only))
    for variant in args.variants:
        rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for name, _draw, references, queries in sets:
            amplitude, jitter = jitter_of(variant)
            expert_module._jittered_views = jitter  # type: ignore[assignment]
            expert = PatchCoreExpert(ExpertConfig(heatmap=False, memory_banks=0), cache_dir=None)
            bank = expert.fit(references, pose="fixed")
            scores = np.array([expert.analyse_with_bank(image, bank).score for image, _ in queries])
            kinds = np.array([kind for _, kind in queries])
            labels = kinds != "normal"
            row = rows[name]
            row["amplitude"].append(amplitude)
            row["centroid_spread"].append(centroid_spread(references))
            row["auroc"].append(image_auroc(list(labels), list(scores)))
            row["balanced"].append(verdict_balanced_accuracy(list(labels), list(scores))[0])
            for kind in sorted(set(kinds)):
                row[f"flagged_{kind}"].append(float((scores[kinds == kind] >= 0.5 + UNCERTAIN_BAND).mean()))
        expert_module._jittered_views = SHIPPED_JITTER
        for name, row in rows.items():
            summary = {key: round(float(np.mean(values)), 3) for key, values in row.items()}
            spread = row["centroid_spread"]
            summary["centroid_spread_range"] = [round(min(spread), 3), round(max(spread), 3)]
            print(json.dumps({"variant": variant, "data": name, **summary}), flush=True)


if __name__ == "__main__":
    main()
