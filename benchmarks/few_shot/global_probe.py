"""Does a whole-image distance add to the patch score at few references? (tuning data only)

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/few_shot/global_probe.py --draws 4 [--shots 4]

For every tuning set of ``fewshot.py`` (generated washer / bracket / bracket-loose, MVTec train
hazelnut, turned hazelnut, transistor with painted defects) and the structural transistor defects of
``structural_probe.py`` (turned, shifted, bent, cut; train images only), the shipped expert gives the
patch score as a ratio to its threshold (``raw / threshold``: 1.0 is the edge of normal). A global
distance is added: one minus the best cosine similarity of the query's pooled backbone embedding
(``ImageEmbedder``, the product memory's) to the references' (turned by 0/90/180/270 degrees when the
bank is free-pose), over ``factor`` x the median leave-one-out distance among the references.

Variants of the verdict's ratio: ``patch`` (shipped), ``global``, ``max`` (either over its edge),
``mean`` of the two ratios, and ``maxF`` with the global ratio's factor F in place of 1.15. Each is
scored by image AUROC and verdict balanced accuracy at the shipped band (calibrated <= 0.45 normal,
>= 0.55 anomalous, the logistic scale 0.08 of the threshold; ``uncertain`` counts as wrong).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from fewshot import datasets as tuning_sets
from structural_probe import bacc
from structural_probe import datasets as structural_sets

from riad_agent.eval.expert_metrics import image_auroc
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.products.embedding import FREE_POSE_ROTATIONS, ImageEmbedder


def all_sets(shots: int, draws: int):
    for name, draw, refs, queries in tuning_sets(shots, draws):
        yield name, draw, refs, [(image, bool(label)) for image, label, _ in queries]
    for _, draw, refs, queries in structural_sets(shots, draws, ["transistor"]):
        yield "struct/transistor", draw, refs, [(image, kind != "normal") for image, kind in queries]


def global_distances(embedder: ImageEmbedder, refs, images, free: bool) -> tuple[np.ndarray, np.ndarray]:
    """(leave-one-out distance of each reference, nearest-reference distance of each image)."""
    angles = FREE_POSE_ROTATIONS if free else (0,)
    bank = np.stack([embedder.embed_rotations(ref, angles) for ref in refs])  # (R, A, D)
    upright = bank[:, 0]
    held = []
    for i in range(len(refs)):
        others = np.delete(bank, i, axis=0).reshape(-1, bank.shape[-1])
        held.append(1.0 - float((others @ upright[i]).max()))
    flat = bank.reshape(-1, bank.shape[-1])
    queries = embedder.embed(images)
    return np.array(held), 1.0 - (queries @ flat.T).max(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--factor", type=float, default=1.15)
    parser.add_argument("--global-factors", type=float, nargs="*", default=[1.5, 2.0, 3.0])
    args = parser.parse_args()
    torch.set_num_threads(2)
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    embedder = ImageEmbedder("efficientnet-lite0")
    summary: dict[str, list[tuple[float, float]]] = {}
    for name, draw, refs, queries in all_sets(args.shots, args.draws):
        bank = expert.fit(refs)
        free = str(bank.meta.get("pose", "")).startswith("free")
        patch = []
        for image, _ in queries:
            found = expert.analyse_with_bank(image, bank)
            patch.append(found.raw_score / found.threshold)
        p = np.array(patch)
        labels = np.array([label for _, label in queries])
        held, dist = global_distances(embedder, refs, [image for image, _ in queries], free)
        level = float(np.median(held))
        variants = {
            "patch": p,
            "global": dist / (args.factor * level),
            "max": np.maximum(p, dist / (args.factor * level)),
            "mean": 0.5 * (p + dist / (args.factor * level)),
        }
        for factor in args.global_factors:
            variants[f"max{factor:g}"] = np.maximum(p, dist / (factor * level))
            variants[f"mean{factor:g}"] = 0.5 * (p + dist / (factor * level))
        line = []
        for vname, ratio in variants.items():
            auc, ba = image_auroc(labels, ratio), bacc(ratio, labels, 1.0)
            summary.setdefault(f"{name}|{vname}", []).append((auc, ba))
            summary.setdefault(f"ALL|{vname}", []).append((auc, ba))
            line.append(f"{vname} {auc:.3f}/{ba:.3f}")
        print(f"{name} draw {draw} ({'free' if free else 'fixed'}): " + "  ".join(line), flush=True)
    print("\nmean over draws (image AUROC, verdict balanced accuracy):")
    for key, values in sorted(summary.items()):
        arr = np.array(values)
        print(f"  {key:34s} {arr[:, 0].mean():.3f} {arr[:, 1].mean():.3f}")


if __name__ == "__main__":
    main()
