"""How often few references of a free part look fixed, and what the stricter cut-offs change.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/few_shot/pose_agreement.py [--draws 60] [--score 6]

Tuning data only (MVTec *train* splits, generated parts). Part 1: the share of reference sets of 2, 3
and 4 images judged fixed by their orientation agreement R, at the old single cut-off 0.97 and at
the shipped ``ExpertConfig.fixed_agreement`` (0.995 / 0.99 / 0.97), over every pair and 2,000 random
triples and quadruples of each product's images. Part 2: the draws whose decision changes (R
between the two cut-offs; the first ``--score`` of ``--draws`` seeded draws per product and count)
are scored both ways, fixed (before) and free (now): image AUROC and verdict balanced accuracy at
the shipped band, the queries of ``fewshot.py``'s sets (12 other good parts and 12 painted ones for a
train split, 8 and 8 generated parts).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling fewshot.py
from fewshot import MVTEC, painted_train_defect

from riad_agent.data import synthetic as syn
from riad_agent.eval.expert_eval import verdict_balanced_accuracy
from riad_agent.eval.expert_metrics import image_auroc
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.expert.pose import FIXED_AGREEMENT, dominant_orientation, fixed_cutoff

OLD = 0.97
Query = tuple[Image.Image, bool]


def train_product(category: str) -> tuple[list[Image.Image], list[Query]]:
    """An MVTec train split: the last 24 images as queries (12 good, 12 with a painted defect), the rest
    as candidate references."""
    images = [
        Image.open(p).convert("RGB") for p in sorted((MVTEC / category / "train" / "good").glob("*.png"))
    ]
    queries = [(image, False) for image in images[-24:-12]]
    queries += [(painted_train_defect(image, 500 + n)[0], True) for n, image in enumerate(images[-12:])]
    return images[:-24], queries


def generated_product(category: str, references: int = 26) -> tuple[list[Image.Image], list[Query]]:
    """A generated product: ``references`` good parts (seeds 100+), 8 good and 8 defective queries."""
    refs = [syn.generate_sample(category, None, 100 + s).image for s in range(references)]
    queries = [(syn.generate_sample(category, None, 5000 + i).image, False) for i in range(8)]
    queries += [(syn.generate_sample(category, syn.DEFECTS[i % 7], 6000 + i).image, True) for i in range(8)]
    return refs, queries


def products() -> dict[str, tuple[list[Image.Image], list[Query]]]:
    """Each product's candidate references and its queries."""
    out = {f"train/{category}": train_product(category) for category in ("hazelnut", "transistor")}
    for category in ("synthetic/bracket", "synthetic/bracket-loose", "synthetic/washer"):
        out[f"gen/{category.split('/')[1]}"] = generated_product(category)
    return out


def agreement(units: np.ndarray, members: tuple[int, ...] | np.ndarray) -> float:
    return float(abs(units[list(members)].mean()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=60)
    parser.add_argument("--score", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(2)
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    rng = np.random.default_rng(5)
    for name, (refs, queries) in products().items():
        vectors = np.array([dominant_orientation(image) for image in refs])
        units = vectors / np.abs(vectors)
        for count in (2, 3, 4):
            if count == 2:
                sets = list(itertools.combinations(range(len(units)), 2))
            else:
                sets = [tuple(rng.choice(len(units), count, replace=False)) for _ in range(2000)]
            values = np.array([agreement(units, members) for members in sets])
            new = fixed_cutoff(count, FIXED_AGREEMENT)
            print(
                f"{name:22s} {count} refs ({len(sets)} sets): fixed at 0.97 {np.mean(values >= OLD):.3f}, "
                f"at {new} {np.mean(values >= new):.3f}; min R {values.min():.4f}"
            )
        labels = [label for _, label in queries]
        for count in (2, 3):
            new = fixed_cutoff(count, FIXED_AGREEMENT)
            changed = []
            for draw in range(args.draws):
                members = np.random.default_rng(1000 + draw).choice(len(refs), count, replace=False)
                if OLD <= agreement(units, members) < new:
                    changed.append(members)
            rows = []
            for members in changed[: args.score]:
                chosen = [refs[int(i)] for i in members]
                row = []
                for pose in ("fixed", "free"):
                    bank = expert.fit(chosen, pose=pose)
                    scores = [expert.analyse_with_bank(image, bank).score for image, _ in queries]
                    row += [image_auroc(labels, scores), verdict_balanced_accuracy(labels, scores)[0]]
                rows.append(row)
            if rows:
                mean = np.mean(rows, axis=0)
                print(
                    f"{name:22s} {count} refs: {len(changed)} of {args.draws} draws change; {len(rows)} scored: "
                    f"fixed AUROC {mean[0]:.3f} bal.acc {mean[1]:.3f} -> free AUROC {mean[2]:.3f} bal.acc {mean[3]:.3f}"
                )
            else:
                print(f"{name:22s} {count} refs: {len(changed)} of {args.draws} draws change")


if __name__ == "__main__":
    main()
