"""Labelled defects as extra normal references: does the expert then draw the defect's region?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/typing_masked_refs.py LAYOUT [LAYOUT ...] [--exemplars 1 3]

On the path an inspection takes, a defect is typed by the expert's strongest region against the
product's normal references; with 1-4 references that region is often a normal variation the
references do not cover (a lead bent the other way, a board stain) rather than the defect. A product
with labelled exemplars holds more of its part: every exemplar image is a normal part outside its mask.
Here the expert's bank is the references' plus, from each labelled exemplar the typing may use, its
cells away from the mask (the mask dilated by ``--dilate`` cells; turned with the references' rotations
for a free pose), the references' calibration unchanged. Variants, the same seeded exemplar draws as
``riad eval typing`` and ``typing_residual.py``: ``shipped`` (the references' bank), ``masked`` (plus
the drawn exemplars, K per type). Reported: top-1 typing accuracy by the expert's region, and how often
that region's box touches the query's mask. Choose on generated layouts and ``typing_residual.py
--build-train`` (MVTec train images only); read the shared test subset once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))  # the sibling typing_residual.py
from typing_residual import exemplar_draws, report_layouts

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

VARIANTS = ("shipped", "masked")


def exemplar_cells(
    expert: PatchCoreExpert, bank: MemoryBank, image: Image.Image, mask: np.ndarray, dilate: int
):
    """The bank rows an exemplar adds: its cells (and its turned views' for a free pose) off the mask."""
    size = expert.config.features.image_size
    free = bank.calibration.get("free", 0.0) > 0
    turns = int(bank.calibration.get("views_per_reference", 1.0)) if free else 1
    angles = [360.0 * k / turns for k in range(turns)]
    mask_image = Image.fromarray((mask * 255).astype(np.uint8))
    views = [rotated(image, angle) for angle in angles]
    masks = [mask_image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0) for angle in angles]
    grids = expert.extractor(views)
    grids = _scale_position(
        grids, bank.calibration.get("position", 1.0), expert.config.features.position_weight
    )
    rows, cols = bank.grid
    kept = []
    for grid, view_mask in zip(grids, masks, strict=True):
        marked = np.asarray(view_mask.resize((size, size), Image.Resampling.BILINEAR)) > 0
        cells = marked.reshape(rows, size // rows, cols, size // cols).any(axis=(1, 3))
        if dilate:
            cells = ndimage.binary_dilation(cells, iterations=dilate)
        kept.append(grid[torch.from_numpy(~cells)])
    return torch.cat(kept)


def with_exemplars(bank: MemoryBank, extra: list[torch.Tensor]) -> MemoryBank:
    rows = [bank.features, *extra]
    owners = [bank.owners] + [torch.full((len(e),), bank.n_references + i) for i, e in enumerate(extra)]
    return MemoryBank(
        features=torch.cat(rows).contiguous(),
        owners=torch.cat(owners).contiguous(),
        n_references=bank.n_references + len(extra),
        grid=bank.grid,
        backbone_id=bank.backbone_id,
        config_key=bank.config_key,
        calibration=dict(bank.calibration),
        meta=dict(bank.meta),
    )


def touches(box: tuple[int, int, int, int], mask: np.ndarray) -> bool:
    x0, y0, x1, y1 = box
    return bool(mask[max(0, y0) : y1, max(0, x0) : x1].any())


def layout_accuracy(folder: Path, embedder, expert, ks: list[int], dilate: int) -> dict:
    references = [Image.open(p).convert("RGB") for p in sorted((folder / "train" / "good").glob("*.png"))[:4]]
    bank = expert.fit(references)
    items = labelled_defects(folder)
    types = sorted({item.defect_type for item in items})
    images, features, by_mask, cells, masks = {}, {}, {}, {}, {}
    for item in items:
        image = Image.open(item.path).convert("RGB")
        images[item.path], masks[item.path] = image, read_mask(item.mask)
        features[item.path] = embedder.features(image)
        by_mask[item.path] = mask_signature(features[item.path], image, item.mask)
        cells[item.path] = exemplar_cells(expert, bank, image, masks[item.path], dilate)
    shipped = {}
    for item in items:
        box, values, prior = strongest_of(
            expert.analyse_with_bank(images[item.path], bank), images[item.path].size
        )
        shipped[item.path] = (
            expert_signature(features[item.path], images[item.path], box, values, prior),
            box,
        )
    out = {}
    for k in ks:
        rng = np.random.default_rng(0)
        right = {(q, v): 0 for q in ("typed", "on-mask") for v in VARIANTS}
        for item in items:
            draws = exemplar_draws(items, types, item, k, rng)
            chosen = [c for kind in types for c in draws[kind]]
            extended = with_exemplars(bank, [cells[c.path] for c in chosen])
            image = images[item.path]
            box, values, prior = strongest_of(expert.analyse_with_bank(image, extended), image.size)
            sides = {
                "shipped": shipped[item.path],
                "masked": (expert_signature(features[item.path], image, box, values, prior), box),
            }
            for variant, (query, qbox) in sides.items():
                best = {
                    kind: max(signature_similarity(query, by_mask[c.path]) for c in picked)
                    for kind, picked in draws.items()
                }
                right[("typed", variant)] += max(best, key=best.__getitem__) == item.defect_type
                right[("on-mask", variant)] += touches(qbox, masks[item.path])
        out[k] = {key: value / len(items) for key, value in right.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("layouts", nargs="+", type=Path)
    parser.add_argument("--exemplars", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--dilate", type=int, default=2, help="cells around the mask left out")
    args = parser.parse_args()
    torch.set_num_threads(2)
    embedder = ImageEmbedder("efficientnet-lite0")
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    report_layouts(
        args.layouts,
        lambda folder, ks: ("", layout_accuracy(folder, embedder, expert, ks, args.dilate)),
        args.exemplars,
    )


if __name__ == "__main__":
    main()
