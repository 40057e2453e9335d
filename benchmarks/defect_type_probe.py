"""Can the defect type be read off the expert's strongest region? A zero-shot probe, as JSON.

    python benchmarks/defect_type_probe.py [--mvtec ../shared/data/mvtec_subset] [--per-type 8]

For each defective image: the expert's strongest region (the connected part of the prior above 60 %
of its peak), the pixels in it that differ from a ring around it (robust z > 3 in brightness or
colour), and from those six attributes - thin line, compact spot, blotch, large area, darker,
brighter, colour change, shape change without any. Each defect type's knowledge entry (name,
aliases, visual cues) is read for the same attributes by a small word list, and the type whose
attribute vector is closest (cosine) wins, among all of the category's types and among four
options (the true type and three others, as the classification questions ask).

This is a measurement, not a component: on generated defects, whose knowledge was written for the
generator, it is far above chance; on real MVTec defects it is below chance, which is why the builtin
model's evidence line says nothing about the defect's type (docs/results.md, "Defect classification").
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from riad_agent.data.synthetic import CATEGORIES, DEFECTS, generate_sample
from riad_agent.expert import PatchCoreExpert
from riad_agent.knowledge.schema import DefectSpec
from riad_agent.question_sets.questions import knowledge_files
from riad_agent.question_sets.sources import mvtec_set

WORDS = {
    "line": "line lines streak streaks scratch crack groove slice split linear elongated long thin narrow stroke fissure cut",
    "spot": "spot spots hole round circular compact dot dots pit opening puncture small",
    "blotch": "blotch patch area stain smear region",
    "large": "whole entire large absent missing entirely",
    "dark": "dark black darker shadow",
    "bright": "bright lighter pale paler white shiny",
    "colour": "colour color tint tinted red blue green yellow ink stain cast discoloured discolored printed",
    "shape": "bent deformed pushed bulge shifted rotated tilted misplaced sideways position",
}
ATTRIBUTES = list(WORDS)


def cue_vector(defect: DefectSpec) -> np.ndarray:
    tokens = re.findall(r"[a-z]+", " ".join([defect.name, defect.visual_cues, *defect.aliases]).lower())
    counts = np.array([sum(t in WORDS[a].split() for t in tokens) for a in ATTRIBUTES], dtype=float)
    counts = np.minimum(counts, 2)
    return counts / (np.linalg.norm(counts) + 1e-9)


def _sigmoid(x: float) -> float:
    return float(1 / (1 + np.exp(-x)))


def region_vector(image: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """The strongest region's attributes, in ``ATTRIBUTES`` order, each in [0, 1]."""
    pixels = image.astype(np.float64)
    height, width = prior.shape
    labels, _ = ndimage.label(prior >= 0.6 * float(prior.max()))
    row, col = np.unravel_index(int(np.argmax(prior)), prior.shape)
    region = labels == labels[row, col]
    ring = ndimage.binary_dilation(region, iterations=max(4, int(0.04 * max(height, width)))) & ~region
    if ring.sum() < 10:
        ring = ~region
    luminance = pixels.mean(-1)
    chroma = pixels - luminance[..., None]
    ring_l, ring_c = np.median(luminance[ring]), np.median(chroma[ring], axis=0)
    spread_l = 1.4826 * np.median(np.abs(luminance[ring] - ring_l)) + 2.0
    spread_c = 1.4826 * np.median(np.linalg.norm(chroma[ring] - ring_c, axis=-1)) + 2.0
    dev_l = luminance - ring_l
    dev_c = np.linalg.norm(chroma - ring_c, axis=-1)
    differs = region & (np.maximum(np.abs(dev_l) / spread_l, dev_c / spread_c) > 3.0)
    if differs.sum() < 8:
        differs = region
    ys, xs = np.nonzero(differs)
    eigen = np.sort(np.linalg.eigvalsh(np.cov(np.stack([xs, ys])))) if len(xs) > 2 else np.ones(2)
    thickness = 2 * float(ndimage.distance_transform_edt(differs)[differs].mean()) / max(height, width)
    length = 4 * float(np.sqrt(eigen[-1])) / max(height, width)
    area = float(differs.sum()) / (height * width)
    line = _sigmoid((length / max(thickness, 1e-4) - 10) / 3)
    small = _sigmoid((0.01 - area) / 0.003)
    dark = float((dev_l[differs] < -2 * spread_l).mean())
    bright = float((dev_l[differs] > 2 * spread_l).mean())
    colour = float(np.clip((dev_c[differs].mean() - 0.5 * abs(dev_l[differs].mean())) / 255 / 0.08, 0, 1))
    values = {
        "line": line,
        "spot": (1 - line) * small,
        "blotch": (1 - line) * (1 - small),
        "large": _sigmoid((float(region.sum()) / (height * width) - 0.12) / 0.03),
        "dark": dark,
        "bright": bright,
        "colour": colour,
        "shape": 1 - max(dark, bright, colour),
    }
    return np.array([values[a] for a in ATTRIBUTES])


def cases(mvtec: Path | None, per_type: int) -> list[tuple[str, str, str, np.ndarray, np.ndarray]]:
    """(source, category, true type, image, prior) for every defective probe image."""
    expert = PatchCoreExpert()
    out = []
    for category in CATEGORIES:
        bank = expert.fit([generate_sample(category, None, 10_000 + s).image for s in range(16)])
        for defect in DEFECTS:
            for seed in range(per_type):
                sample = generate_sample(category, defect, 20_000 + seed)
                prior = expert.analyse_with_bank(sample.image, bank).prior_map()
                out.append(("generated", category, defect, np.asarray(sample.image), prior))
    if mvtec is not None:
        data = mvtec_set(mvtec, "test")
        banks: dict[str, Any] = {}
        for item in data.images:
            if not item.label.anomalous or item.label.defect_type is None:
                continue
            if item.pool not in banks:
                banks[item.pool] = expert.fit([load() for _, load in data.pools[item.pool]])
            image = item.load().convert("RGB")
            prior = expert.analyse_with_bank(image, banks[item.pool]).prior_map()
            out.append(("mvtec", item.label.category, item.label.defect_type, np.asarray(image), prior))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mvtec", type=Path, default=None)
    parser.add_argument("--per-type", type=int, default=8)
    args = parser.parse_args()
    specs = knowledge_files()
    rng = random.Random(0)
    tallies: dict[str, list[int]] = {}
    for source, category, truth, image, prior in cases(args.mvtec, args.per_type):
        measured = region_vector(image, prior)
        scores = {d.type: float(cue_vector(d) @ measured) for d in specs[category].defects}
        others = [t for t in scores if t != truth]
        options = [truth, *rng.sample(others, min(3, len(others)))]
        tally = tallies.setdefault(source, [0, 0, 0])
        tally[0] += max(scores, key=lambda t: scores[t]) == truth
        tally[1] += max(options, key=lambda t: scores[t]) == truth
        tally[2] += 1
    report = {
        source: {"images": n, "top1_all_types": round(top1 / n, 3), "four_options": round(four / n, 3)}
        for source, (top1, four, n) in tallies.items()
    }
    print(json.dumps({"benchmark": "defect_type_probe", "sources": report}, indent=1))


if __name__ == "__main__":
    main()
