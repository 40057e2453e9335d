"""How a defect region's look is pooled, for typing by exemplars: box means vs mask-weighted vs contrast.

    python benchmarks/typing_pooling.py LAYOUT [LAYOUT ...] [--exemplars 1 3] [--draws 3]

Leave-one-out typing over the labelled test images of MVTec-layout folders (as `riad eval typing
--box mask`): each image's region against ``K`` other labelled images per type of its category, the
same seeded draws for every variant. Variants of the look (per tapped layer of the embedder's
backbone, L2-normalised per layer as the product memory does):

  box        channel means inside the mask's box (what ships)
  masked     channel means weighted by the mask inside the box (the defect's own cells)
  contrast   box means minus the means of a ring around the box (what differs from the surface)
  masked-contrast  masked means minus the ring's means

each alone ("look") and fused with the describer's words at the shipped WORDS_WEIGHT ("+words").
Prints top-1 accuracy per variant, K and layout as JSON. Choose on generated layouts only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from riad_agent.eval.typing_eval import labelled_defects, mask_box
from riad_agent.products import ImageEmbedder
from riad_agent.products.embedding import describe_box, fused_region_vector

VARIANTS = ("box", "masked", "contrast", "masked-contrast")


def _cells(
    box: tuple[int, int, int, int], size: tuple[int, int], rows: int, cols: int
) -> tuple[int, int, int, int]:
    width, height = size
    x0, y0, x1, y1 = box
    c0 = min(x0 * cols // width, cols - 1)
    r0 = min(y0 * rows // height, rows - 1)
    c1 = min(max(c0 + 1, -(-x1 * cols // width)), cols)
    r1 = min(max(r0 + 1, -(-y1 * rows // height)), rows)
    return r0, r1, c0, c1


def looks(
    maps: list[torch.Tensor], size: tuple[int, int], box: tuple[int, int, int, int], mask: np.ndarray
) -> dict[str, np.ndarray]:
    """Every variant's look vector of one region."""
    out: dict[str, list[torch.Tensor]] = {v: [] for v in VARIANTS}
    for feature_map in maps:
        rows, cols = feature_map.shape[-2:]
        r0, r1, c0, c1 = _cells(box, size, rows, cols)
        fmap = feature_map[0].float()
        inside = fmap[:, r0:r1, c0:c1].flatten(1)
        weights = torch.from_numpy(
            np.asarray(
                Image.fromarray((mask * 255).astype(np.uint8)).resize((cols, rows), Image.BILINEAR),
                dtype=np.float32,
            )
            / 255.0
        )[r0:r1, c0:c1].flatten()
        weights = weights + 1e-3
        masked = (inside * weights).sum(1) / weights.sum()
        plain = inside.mean(1)
        pad_r, pad_c = max(1, (r1 - r0) // 2), max(1, (c1 - c0) // 2)
        R0, R1, C0, C1 = max(0, r0 - pad_r), min(rows, r1 + pad_r), max(0, c0 - pad_c), min(cols, c1 + pad_c)
        ring_mask = torch.ones(R1 - R0, C1 - C0, dtype=torch.bool)
        ring_mask[r0 - R0 : r1 - R0, c0 - C0 : c1 - C0] = False
        outer = fmap[:, R0:R1, C0:C1][:, ring_mask]
        ring = outer.mean(1) if outer.shape[1] else fmap.flatten(1).mean(1)
        for name, value in (
            ("box", plain),
            ("masked", masked),
            ("contrast", plain - ring),
            ("masked-contrast", masked - ring),
        ):
            out[name].append(F.normalize(value[None], dim=1))
    return {name: F.normalize(torch.cat(parts, dim=1), dim=1)[0].numpy() for name, parts in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layouts", nargs="+", type=Path)
    parser.add_argument("--exemplars", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--draws", type=int, default=3)
    args = parser.parse_args()
    embedder = ImageEmbedder()
    report: dict[str, dict[str, float]] = {}
    for layout in args.layouts:
        for category in sorted(p for p in layout.iterdir() if (p / "test").is_dir()):
            items = labelled_defects(category)
            types = sorted({i.defect_type for i in items})
            if len(types) < 2:
                continue
            vectors: dict[Path, dict[str, np.ndarray]] = {}
            for item in items:
                image = Image.open(item.path).convert("RGB")
                mask = (np.asarray(Image.open(item.mask).convert("L")) > 127).astype(np.float32)
                box = mask_box(item.mask)
                maps = embedder.features(image).maps
                words = describe_box(image, mask, box, refine=False)
                found = looks(maps, image.size, box, mask)
                vectors[item.path] = {
                    **{f"{k} look": v for k, v in found.items()},
                    **{f"{k} +words": fused_region_vector(v, words) for k, v in found.items()},
                }
            for k in args.exemplars:
                for draw in range(args.draws):
                    rng = np.random.default_rng(draw)
                    picks = {}
                    for item in items:
                        for kind in types:
                            pool = [o for o in items if o.defect_type == kind and o.path != item.path]
                            picks[(item.path, kind)] = (
                                [pool[i] for i in rng.permutation(len(pool))[:k]] if pool else []
                            )
                    for variant in vectors[items[0].path]:
                        right = 0
                        for item in items:
                            scores = {
                                kind: max(
                                    float(vectors[item.path][variant] @ vectors[o.path][variant])
                                    for o in chosen
                                )
                                for kind in types
                                if (chosen := picks[(item.path, kind)])
                            }
                            right += max(scores, key=scores.__getitem__) == item.defect_type
                        key = f"{layout.name}/{category.name} K={k}"
                        report.setdefault(key, {}).setdefault(variant, 0.0)
                        report[key][variant] += right / len(items) / args.draws
    means: dict[str, dict[str, float]] = {}
    for key, row in report.items():
        k = key.split(" ")[1]
        for variant, value in row.items():
            means.setdefault(k, {}).setdefault(variant, 0.0)
            means[k][variant] += value / sum(1 for other in report if other.endswith(k))
    print(
        json.dumps(
            {
                "per_category": {k: {v: round(x, 3) for v, x in r.items()} for k, r in report.items()},
                "mean": {k: {v: round(x, 3) for v, x in r.items()} for k, r in means.items()},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
