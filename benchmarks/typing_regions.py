"""Type the strongest region, or whichever of the expert's first few regions looks most like a labelled defect?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/typing_regions.py LAYOUT [LAYOUT ...] [--exemplars 1 3] [--top 1 2 3]

An inspection types the expert's strongest region (``riad eval typing --box expert``). When that
region is a false alarm (a fixtured part sitting a little off where the references lie) and the
defect is the expert's second region, the type is read off the wrong place. Here each of the
expert's ``top`` strongest regions is typed against the exemplars (their mask regions), and a type's
score is its best over those regions. ``top 1`` is what ships. Leave-one-out over each layout's
labelled defects with 4 train references, the same seeded exemplar draws for every ``top``; prints
top-1 accuracy per category, layout, K and ``top``, and how many queries had more than one region.
Choose on generated layouts (``write_mvtec_layout(...)`` as in docs/results.md, "Typing by the
defect's own cells") and the train-only layout of ``typing_residual.py --build-train``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from riad_agent.eval.typing_eval import expert_signature, labelled_defects, mask_signature
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.products import ImageEmbedder
from riad_agent.products.embedding import RegionSignature, signature_similarity


def region_signatures(
    expert: PatchCoreExpert,
    embedder: ImageEmbedder,
    image: Image.Image,
    references: list[Image.Image],
    top: int,
) -> list[RegionSignature]:
    """Signatures of the expert's ``top`` strongest regions of ``image`` (its peak area when none)."""
    found = expert.analyse(image, references)
    features = embedder.features(image)
    prior = found.prior_map()
    regions = sorted(found.regions, key=lambda region: -region.score)[:top]
    if not regions:
        y, x = np.unravel_index(int(np.argmax(found.pixel_scores)), found.pixel_scores.shape)
        half = max(image.size) // 16
        box = (max(0, int(x) - half), max(0, int(y) - half), int(x) + half, int(y) + half)
        return [expert_signature(features, image, box, found.pixel_scores, prior)]
    return [
        expert_signature(features, image, (r.x0, r.y0, r.x1, r.y1), found.pixel_scores, prior)
        for r in regions
    ]


def category_accuracy(
    folder: Path, embedder: ImageEmbedder, expert: PatchCoreExpert, ks: list[int], tops: list[int]
) -> dict[str, object]:
    references = [Image.open(p).convert("RGB") for p in sorted((folder / "train" / "good").glob("*.png"))[:4]]
    items = labelled_defects(folder)
    types = sorted({item.defect_type for item in items})
    exemplar_side, query_side = {}, {}
    for item in items:
        image = Image.open(item.path).convert("RGB")
        exemplar_side[item.path] = mask_signature(embedder.features(image), image, item.mask)
        query_side[item.path] = region_signatures(expert, embedder, image, references, max(tops))
    out: dict[str, object] = {
        "several_regions": sum(len(q) > 1 for q in query_side.values()),
        "queries": len(items),
    }
    for k in ks:
        rng = np.random.default_rng(0)
        right = dict.fromkeys(tops, 0)
        for item in items:
            draws = {}
            for kind in types:
                pool = [o for o in items if o.defect_type == kind and o.path != item.path]
                draws[kind] = [pool[i] for i in rng.permutation(len(pool))[:k]]
            for top in tops:
                regions = query_side[item.path][:top]
                best = {
                    kind: max(signature_similarity(q, exemplar_side[c.path]) for q in regions for c in chosen)
                    for kind, chosen in draws.items()
                    if chosen
                }
                right[top] += max(best, key=lambda kind: best[kind]) == item.defect_type
        for top in tops:
            out[f"K{k}_top{top}"] = right[top] / len(items)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layouts", type=Path, nargs="+")
    parser.add_argument("--exemplars", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--top", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    torch.set_num_threads(2)
    embedder = ImageEmbedder()
    for layout in args.layouts:
        expert = PatchCoreExpert(ExpertConfig(heatmap=False))
        rows = {}
        for folder in sorted(p for p in layout.iterdir() if (p / "test").is_dir()):
            rows[folder.name] = category_accuracy(folder, embedder, expert, args.exemplars, args.top)
        keys = [key for key in next(iter(rows.values())) if key.startswith("K")]
        mean = {key: round(float(np.mean([row[key] for row in rows.values()])), 3) for key in keys}
        print(json.dumps({"layout": str(layout), "mean": mean, "categories": rows}))


if __name__ == "__main__":
    main()
