"""The shipped expert against a plain patch 1-nearest-neighbour baseline, image AUROC, side by side.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/few_shot/plain_baseline.py \
        [--elpv-seeds 1 2 3] [--limit 40] [--layout DIR ...] [--shots 1 2 4 8]

Issue 16 was filed when the expert lost to "a plain 1-nearest-neighbour EfficientNet-Lite0 baseline at
256 px" on unseen products. The baseline here: the expert's own patch features (EfficientNet-Lite0,
256 px, stride 8, 3 x 3 pooling) without position features, every reference patch in the bank, image
score = the largest distance of a query patch to its nearest reference patch; no pose handling, no
alignment, no calibration. Data: ELPV cells (a check set: drawn as ``riad eval expert --data elpv``
draws them), MVTec-layout folders (generated ones for tuning; references = the first K of
train/good, queries = every test image) and MVTec train splits with painted defects (``--train``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling fewshot.py
from fewshot import MVTEC, painted_train_defect

from riad_agent.eval.expert_metrics import image_auroc
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.expert.features import FeatureConfig, PatchFeatureExtractor


def plain_scores(
    extractor: PatchFeatureExtractor, refs: list[Image.Image], queries: list[Image.Image]
) -> list[float]:
    features = extractor(refs)
    bank = features.reshape(-1, features.shape[-1])
    scores = []
    for query in queries:
        patches = extractor([query]).reshape(-1, bank.shape[-1])
        scores.append(float(torch.cdist(patches, bank).min(dim=1).values.max()))
    return scores


def elpv_sets(
    seeds: list[int], limit: int, shots: list[int]
) -> list[tuple[str, list[Image.Image], list[tuple[Image.Image, bool]]]]:
    from elpv_dataset.utils import load_dataset

    images, probabilities, types = load_dataset()
    sets = []
    for kind in ("mono", "poly"):
        for seed in seeds:
            rng = np.random.default_rng(seed)
            of_kind = np.flatnonzero(types == kind)
            normal = rng.permutation(of_kind[probabilities[of_kind] == 0])
            pool, test_normal = normal[: len(normal) // 2], normal[len(normal) // 2 :]
            defective = rng.permutation(of_kind[probabilities[of_kind] >= 0.5])
            tests = [(i, False) for i in test_normal[:limit]] + [(i, True) for i in defective[:limit]]
            decoded = [(Image.fromarray(images[int(i)]).convert("RGB"), label) for i, label in tests]
            for k in shots:
                refs = [Image.fromarray(images[int(i)]).convert("RGB") for i in pool[:k]]
                sets.append((f"elpv/{kind} seed {seed} k{k}", refs, decoded))
    return sets


def layout_sets(
    root: Path, shots: list[int]
) -> list[tuple[str, list[Image.Image], list[tuple[Image.Image, bool]]]]:
    sets = []
    for category in sorted(p for p in root.iterdir() if (p / "train" / "good").is_dir()):
        goods = sorted((category / "train" / "good").glob("*.png"))
        tests = [
            (Image.open(path).convert("RGB"), path.parent.name != "good")
            for path in sorted((category / "test").glob("*/*.png"))
        ]
        for k in shots:
            refs = [Image.open(path).convert("RGB") for path in goods[:k]]
            sets.append((f"{root.name}/{category.name} k{k}", refs, tests))
    return sets


def train_sets(
    categories: list[str], shots: list[int]
) -> list[tuple[str, list[Image.Image], list[tuple[Image.Image, bool]]]]:
    """MVTec train/good only: references the first K of a seeded order, queries 12 other good parts and
    12 others with a generated defect painted on the object (``fewshot.py``'s train sets)."""
    sets = []
    for category in categories:
        paths = sorted((MVTEC / category / "train" / "good").glob("*.png"))
        order = np.random.default_rng(0).permutation(len(paths))
        images = [Image.open(paths[i]).convert("RGB").resize((256, 256)) for i in order]
        tests = [(image, False) for image in images[-24:-12]] + [
            (painted_train_defect(image, 1000 + n)[0], True) for n, image in enumerate(images[-12:])
        ]
        for k in shots:
            sets.append((f"train/{category} k{k}", images[:k], tests))
    return sets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--elpv-seeds", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--layout", type=Path, nargs="*", default=[])
    parser.add_argument("--train", nargs="*", default=[], help="MVTec categories of RIAD_MVTEC (train/good)")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    torch.set_num_threads(2)
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    extractor = PatchFeatureExtractor(expert.extractor.backbone, FeatureConfig(position_weight=0.0))
    sets = elpv_sets(args.elpv_seeds, args.limit, args.shots) if args.elpv_seeds else []
    for root in args.layout:
        sets += layout_sets(root, args.shots)
    sets += train_sets(args.train, args.shots)
    rows = []
    for name, refs, tests in sets:
        queries = [image for image, _ in tests]
        labels = [label for _, label in tests]
        bank = expert.fit(refs)
        shipped = [expert.analyse_with_bank(query, bank).score for query in queries]
        plain = plain_scores(extractor, refs, queries)
        row = {"set": name, "shipped": image_auroc(labels, shipped), "plain": image_auroc(labels, plain)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    for prefix in sorted({r["set"].split(" ")[0] for r in rows}):
        for k in args.shots:
            chosen = [r for r in rows if r["set"].startswith(prefix + " ") and r["set"].endswith(f"k{k}")]
            if chosen:
                shipped = np.mean([r["shipped"] for r in chosen])
                plain = np.mean([r["plain"] for r in chosen])
                print(f"{prefix:28s} k={k}: shipped {shipped:.3f}  plain {plain:.3f}  ({len(chosen)} sets)")


if __name__ == "__main__":
    main()
