"""Which region of a labelled exemplar should a query's expert region be compared with?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/typing_exemplar_side.py LAYOUT [LAYOUT ...] [--exemplars 1 3]

``riad eval typing --box expert`` compares the expert's strongest region of the query (cells by its
prior map) with each exemplar's *mask* region. Here the exemplar side is also taken the way the query
is (``expert``: the expert's strongest region of the exemplar against the same references), or the
better of the two (``both``). Leave-one-out over each layout's labelled defects, the same seeded
exemplar draws for every side; prints top-1 accuracy per layout, K and side. Generated layouts only:
``write_mvtec_layout(...)`` as in docs/results.md ("Typing by the defect's own cells").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from riad_agent.eval.typing_eval import expert_signature, labelled_defects, mask_signature, strongest_box
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.products import ImageEmbedder
from riad_agent.products.embedding import signature_similarity

SIDES = ("mask", "expert", "both")


def category_accuracy(folder: Path, embedder: ImageEmbedder, expert: PatchCoreExpert, ks: list[int]) -> dict:
    references = [Image.open(p).convert("RGB") for p in sorted((folder / "train" / "good").glob("*.png"))[:4]]
    box_of = strongest_box(expert, references)
    items = labelled_defects(folder)
    types = sorted({item.defect_type for item in items})
    by_mask, by_expert = {}, {}
    for item in items:
        image = Image.open(item.path).convert("RGB")
        features = embedder.features(image)
        by_mask[item.path] = mask_signature(features, image, item.mask)
        by_expert[item.path] = expert_signature(features, image, *box_of(image))
    out = {}
    for k in ks:
        rng = np.random.default_rng(0)
        right = dict.fromkeys(SIDES, 0)
        for item in items:
            draws = {}
            for kind in types:
                pool = [o for o in items if o.defect_type == kind and o.path != item.path]
                draws[kind] = [pool[i] for i in rng.permutation(len(pool))[:k]]
            query = by_expert[item.path]
            for side in SIDES:
                best = {}
                for kind, chosen in draws.items():
                    sims = []
                    for c in chosen:
                        mask_sim = signature_similarity(query, by_mask[c.path])
                        expert_sim = signature_similarity(query, by_expert[c.path])
                        sims.append(
                            {"mask": mask_sim, "expert": expert_sim, "both": max(mask_sim, expert_sim)}[side]
                        )
                    best[kind] = max(sims)
                right[side] += max(best, key=best.get) == item.defect_type
        out[k] = {side: right[side] / len(items) for side in SIDES}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layouts", nargs="+", type=Path)
    parser.add_argument("--exemplars", type=int, nargs="+", default=[1, 3])
    args = parser.parse_args()
    torch.set_num_threads(2)
    embedder = ImageEmbedder()
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    for layout in args.layouts:
        rows = {}
        for folder in sorted(p for p in layout.iterdir() if (p / "test").is_dir()):
            for k, accs in category_accuracy(folder, embedder, expert, args.exemplars).items():
                print(
                    f"{layout.name} {folder.name} K={k} " + " ".join(f"{s} {a:.3f}" for s, a in accs.items()),
                    flush=True,
                )
                for side, acc in accs.items():
                    rows.setdefault((k, side), []).append(acc)
        for (k, side), accs in sorted(rows.items()):
            print(f"== {layout.name} K={k} {side}: {np.mean(accs):.3f}")


if __name__ == "__main__":
    main()
