"""Would a product's labelled exemplars, outside their defects, help the expert with one reference?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/exemplar_normals.py LAYOUT [LAYOUT ...] [--refs 1]

A labelled exemplar is a product image that is normal outside its (dilated) mask. Here each
defective test image of a generated MVTec-layout folder is judged leave-one-out against a bank of
``--refs`` train references alone, and against the same bank plus the cells of one other labelled
image per defect type that lie outside their mask grown by one cell (the turned views too, for a
free pose, ``--views``; the calibration stays the references'). Printed per category and mean: image AUROC
(defective test images against the layout's normal test images, scored against the same banks),
the share of normal images over 0.5, of defective images over 0.5, how often the strongest region
touches the defect's mask, and the top-1 typing with one exemplar per type on the expert's region
(the product memory's rule: cells by the prior map, words; exemplars by their masks). A measurement
for the next step (issue 18), not a shipped setting.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from riad_agent.eval.expert_metrics import image_auroc
from riad_agent.eval.typing_eval import (
    expert_signature,
    labelled_defects,
    mask_signature,
    read_mask,
    strongest_of,
)
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.expert.bank import MemoryBank
from riad_agent.expert.expert import _scale_position
from riad_agent.expert.pose import rotated
from riad_agent.products import ImageEmbedder
from riad_agent.products.embedding import signature_similarity


def partial_rows(
    expert: PatchCoreExpert, bank: MemoryBank, image: Image.Image, mask: np.ndarray, views: int = 8
) -> torch.Tensor:
    """The bank rows of ``image`` outside ``mask`` grown by one cell, in the bank's views and scaling."""
    n_rot = min(views, int(bank.calibration.get("views_per_reference", 1.0)))
    free = bank.calibration.get("free", 0.0) > 0
    angles = [360.0 * k / n_rot for k in range(n_rot)] if free else [0.0]
    marked = Image.fromarray(mask.astype(np.uint8) * 255)
    turned = [rotated(image, a) if a else image for a in angles]
    masks = [np.asarray(marked.rotate(a, resample=Image.Resampling.NEAREST)) > 127 for a in angles]
    grids = expert.extractor(turned)
    grids = _scale_position(
        grids, bank.calibration.get("position", 1.0), expert.config.features.position_weight
    )
    rows, cols = bank.grid
    keep = []
    for view_mask in masks:
        cells = (
            np.asarray(
                Image.fromarray(view_mask.astype(np.uint8) * 255).resize((cols, rows), Image.Resampling.BOX)
            )
            > 0
        )
        keep.append(~ndimage.binary_dilation(cells, iterations=1))
    chosen = torch.from_numpy(np.stack(keep))
    return grids[chosen]


def with_rows(bank: MemoryBank, rows: torch.Tensor) -> MemoryBank:
    owners = torch.full((rows.shape[0],), bank.n_references, dtype=bank.owners.dtype)
    return replace(
        bank,
        features=torch.cat([bank.features, rows]).contiguous(),
        owners=torch.cat([bank.owners, owners]),
    )


def category(
    folder: Path, expert: PatchCoreExpert, embedder: ImageEmbedder, refs: int, seed: int, views: int
) -> dict:
    references = [
        Image.open(p).convert("RGB") for p in sorted((folder / "train" / "good").glob("*.png"))[:refs]
    ]
    bank = expert.fit(references)
    items = labelled_defects(folder)
    types = sorted({item.defect_type for item in items})
    goods = [Image.open(p).convert("RGB") for p in sorted((folder / "test" / "good").glob("*.png"))]
    images = {item.path: Image.open(item.path).convert("RGB") for item in items}
    masks = {item.path: read_mask(item.mask) > 0.5 for item in items}
    features = {item.path: embedder.features(images[item.path]) for item in items}
    exemplar_sig = {
        item.path: mask_signature(features[item.path], images[item.path], item.mask) for item in items
    }
    rows_of = {
        item.path: partial_rows(expert, bank, images[item.path], masks[item.path], views) for item in items
    }
    rng = np.random.default_rng(seed)
    stats = {side: {"bad": [], "good": [], "touch": 0, "typed": 0} for side in ("refs", "refs+exemplars")}
    # a normal test image against the references alone: the same bank for every query
    stats["refs"]["good"] = [expert.analyse_with_bank(good, bank).score for good in goods[:1]]
    for item in items:
        chosen = {}
        for kind in types:
            pool = [o for o in items if o.defect_type == kind and o.path != item.path]
            chosen[kind] = pool[int(rng.integers(len(pool)))]
        extra = with_rows(bank, torch.cat([rows_of[c.path] for c in chosen.values()]))
        for side, used in (("refs", bank), ("refs+exemplars", extra)):
            result = expert.analyse_with_bank(images[item.path], used)
            stats[side]["bad"].append(result.score)
            box, values, prior = strongest_of(result, images[item.path].size)
            x0, y0, x1, y1 = box
            stats[side]["touch"] += bool(masks[item.path][y0:y1, x0:x1].any())
            query = expert_signature(features[item.path], images[item.path], box, values, prior)
            best = max(types, key=lambda k: signature_similarity(query, exemplar_sig[chosen[k].path]))
            stats[side]["typed"] += best == item.defect_type
        # and against this query's bank with the exemplars
        stats["refs+exemplars"]["good"] += [expert.analyse_with_bank(good, extra).score for good in goods[:1]]
    out = {}
    for side, s in stats.items():
        bad, good = np.array(s["bad"]), np.array(s["good"])
        labels = np.r_[np.ones(len(bad), bool), np.zeros(len(good), bool)]
        out[side] = {
            "auroc": image_auroc(labels, np.r_[bad, good]),
            "normal_over": float((good > 0.5).mean()),
            "defect_over": float((bad > 0.5).mean()),
            "touch": s["touch"] / len(items),
            "typing": s["typed"] / len(items),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layouts", nargs="+", type=Path)
    parser.add_argument("--refs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--views", type=int, default=1, help="Turned views of each exemplar (free pose).")
    args = parser.parse_args()
    torch.set_num_threads(2)
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    embedder = ImageEmbedder()
    summary: dict[str, list[dict]] = {}
    for layout in args.layouts:
        for folder in sorted(p for p in layout.iterdir() if (p / "test").is_dir()):
            result = category(folder, expert, embedder, args.refs, args.seed, args.views)
            for side, figures in result.items():
                summary.setdefault(side, []).append(figures)
                print(
                    f"{layout.name}/{folder.name} {side:15s} "
                    + " ".join(f"{k} {v:.3f}" for k, v in figures.items()),
                    flush=True,
                )
    for side, rows in summary.items():
        print(f"== {side:15s} " + " ".join(f"{k} {np.mean([r[k] for r in rows]):.3f}" for k in rows[0]))


if __name__ == "__main__":
    main()
