"""Fixed-pose parts: which image score holds on structural defects? (train splits only)

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/few_shot/structural_probe.py --draws 8 \
        --only transistor bracket [--factor 1.15] [--grow 0 2] [--config '{...}']

Structural defects are made from MVTec *train/good* images and generated fixed-pose products (no
test image is read): the part turned (10-30 degrees), shifted (10-20 % of the side), a piece of the
lower centre displaced sideways ("bent"), a piece of the centre painted over with the background
colour ("cut"); plus the painted surface defects of ``fewshot.py``. For each query the probe keeps
two nearest-distance grids against a fixed-pose bank built with ``fixed_margin_cells=0``: with the
position features (``d_pos``) and without (``d_free``). Variants of the image score (the grid's
peak): ``margin0`` (d_pos, every cell), ``free`` (d_free), ``allowN`` (a per-cell allowance for the
position penalty learned from the leave-one-out references, grown N cells: ``d_free + max(0, d_pos -
d_free - allowance)``), ``ringN`` (the outer N cells not scored: ``fixed_margin_cells = N`` ships
with N = 2). ``--backward`` adds the reverse direction: each reference patch's nearest query patch,
per cell the closest reference's (a piece every reference has there and the query lacks), alone
(``B-bwd``) and with the forward score as their maximum or mean of threshold ratios. Each is thresholded the shipped way (``--factor`` x the median leave-one-out score) and
compared by image AUROC and verdict balanced accuracy at the shipped band.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from fewshot import painted_train_defect, train_draw

from riad_agent.data import synthetic as syn
from riad_agent.eval.expert_metrics import image_auroc
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.expert.alignment import best_shift, cell_steps, shift_positions
from riad_agent.expert.bank import nearest_distances
from riad_agent.expert.expert import _scale_position
from riad_agent.expert.pose import border_fill

SIDE = 256


def structural_with_mask(
    image: Image.Image, kind: str, rng: np.random.Generator
) -> tuple[Image.Image, np.ndarray]:
    """A structural defect of ``kind`` made on ``image`` (resized to SIDE) and its mask (True = changed):
    the whole frame for a turned or shifted part, the strip's old and new place for ``bent``, the
    painted square for ``cut``."""
    base = image.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BICUBIC)
    fill = border_fill(base)
    mask = np.zeros((SIDE, SIDE), dtype=bool)
    if kind == "turned":
        angle = float(rng.uniform(10, 30)) * (1 if rng.random() < 0.5 else -1)
        return base.rotate(angle, Image.Resampling.BICUBIC, fillcolor=fill), ~mask
    if kind == "shifted":
        dx, dy = (int(v) for v in rng.uniform(0.10, 0.20, size=2) * SIDE * rng.choice([-1, 1], size=2))
        if rng.random() < 0.5:
            dy = 0
        return Image.fromarray(np.roll(np.asarray(base), (dy, dx), axis=(0, 1))), ~mask
    pixels = np.asarray(base).copy()
    if kind == "bent":
        x0 = int(rng.uniform(0.35, 0.6) * SIDE)
        w = int(rng.uniform(0.06, 0.1) * SIDE)
        y0, y1 = int(0.55 * SIDE), int(rng.uniform(0.75, 0.9) * SIDE)
        shift = int(rng.uniform(0.04, 0.07) * SIDE) * (1 if rng.random() < 0.5 else -1)
        strip = pixels[y0:y1, x0 : x0 + w].copy()
        pixels[y0:y1, x0 + shift : x0 + shift + w] = strip
        mask[y0:y1, min(x0, x0 + shift) : max(x0, x0 + shift) + w] = True
        return Image.fromarray(pixels), mask
    if kind == "cut":
        side = int(rng.uniform(0.07, 0.11) * SIDE)
        cx, cy = int(rng.uniform(0.38, 0.62) * SIDE), int(rng.uniform(0.45, 0.75) * SIDE)
        pixels[cy - side // 2 : cy + side // 2, cx - side // 2 : cx + side // 2] = fill
        mask[cy - side // 2 : cy + side // 2, cx - side // 2 : cx + side // 2] = True
        out = ndimage.gaussian_filter(pixels.astype(np.float32), (1, 1, 0))
        return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)), mask
    raise ValueError(kind)


def structural(image: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """The defective image of :func:`structural_with_mask`."""
    return structural_with_mask(image, kind, rng)[0]


KINDS = ("turned", "shifted", "bent", "cut")


def datasets(shots: int, draws: int, only: list[str]):
    for cat in ("transistor", "hazelnut"):
        if only and cat not in only:
            continue
        for draw in range(draws):
            refs, rest = train_draw(cat, draw, shots)
            queries = [(Image.open(path).convert("RGB"), "normal") for path in rest[:12]]
            for j, path in enumerate(rest[12:20]):
                image, _ = painted_train_defect(Image.open(path).convert("RGB"), 31 * draw + j)
                queries.append((image, "painted"))
            for j, path in enumerate(rest[20:32]):
                kind = KINDS[j % len(KINDS)]
                queries.append((structural(Image.open(path), kind, np.random.default_rng([draw, j])), kind))
            yield f"train/{cat}", draw, refs, queries
    if not only or "bracket" in only:
        for draw in range(draws):
            refs = [
                syn.generate_sample("synthetic/bracket", None, 100 * draw + s).image for s in range(shots)
            ]
            queries = [
                (syn.generate_sample("synthetic/bracket", None, 5000 + 50 * draw + i).image, "normal")
                for i in range(12)
            ]
            for i, d in enumerate(syn.POSE_DEFECTS * 2):
                queries.append((syn.generate_sample("synthetic/bracket", d, 6000 + 50 * draw + i).image, d))
            yield "gen/bracket", draw, refs, queries


def grids(expert: PatchCoreExpert, bank, image: Image.Image, exclude: int | None = None):
    feats = expert.extractor([image])
    feats = _scale_position(
        feats, bank.calibration.get("position", 1.0), expert.config.features.position_weight
    )[0]
    d_pos = expert._aligned_distances(feats, bank, exclude_owner=exclude)
    flat = feats.reshape(-1, feats.shape[-1])[:, :-2]
    excl = None if exclude is None else bank.owners
    d_free = nearest_distances(flat, bank.features[:, :-2], exclude=excl, exclude_owner=exclude)
    return d_pos, d_free.reshape(bank.grid).numpy()


def backward(expert: PatchCoreExpert, bank, image: Image.Image, exclude: int | None = None) -> np.ndarray:
    """Per cell: how far the nearest query patch is from the closest reference patch of that cell.

    The references' patches (all views, the excluded reference left out) look for their nearest
    query patch (position features included, the query aligned as in scoring); a cell's value is the
    smallest such distance among the bank rows at that cell: large where every reference has
    something the query lacks there (a missing or moved piece)."""
    weight = expert.config.features.position_weight * bank.calibration.get("position", 1.0)
    feats = expert.extractor([image])
    feats = _scale_position(
        feats, bank.calibration.get("position", 1.0), expert.config.features.position_weight
    )[0]
    skip = None if exclude is None else bank.owners == exclude
    if weight > 0 and expert.config.align_reach > 0:
        shift = best_shift(
            feats, bank.features, cell_steps(bank.grid, weight), expert.config.align_reach, skip=skip
        )
        if shift != (0.0, 0.0):
            feats = shift_positions(feats, shift)
    rows_, cols_ = bank.grid
    keep = torch.ones(len(bank), dtype=torch.bool) if skip is None else ~skip
    rows = bank.features[keep]
    far = nearest_distances(rows, feats.reshape(-1, feats.shape[-1])).numpy()
    ys = np.clip(np.rint(rows[:, -2].numpy() / weight * (rows_ - 1)), 0, rows_ - 1).astype(int)
    xs = np.clip(np.rint(rows[:, -1].numpy() / weight * (cols_ - 1)), 0, cols_ - 1).astype(int)
    grid = np.full(bank.grid, np.inf)
    np.minimum.at(grid, (ys, xs), far)
    grid[~np.isfinite(grid)] = np.median(grid[np.isfinite(grid)])
    return grid


def bacc(scores: np.ndarray, labels: np.ndarray, threshold: float, band: float = 0.05, rel=0.08) -> float:
    s = 1 / (1 + np.exp(-(scores / threshold - 1) / rel))
    tnr = np.mean(s[~labels] <= 0.5 - band)
    tpr = np.mean(s[labels] >= 0.5 + band)
    return 0.5 * (tnr + tpr)


def ring2_variants(grid: tuple[int, int], held: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Variants on the shipped ring2 score (session of 2026-12-01 night; none kept): the grid smoothed
    (sigma 0.5 / 1 cell), the position-free grid, the mean of the top 3 cells, and the position-aware
    and position-free peaks each over its own leave-one-out level, mixed (w of the free one) or maxed."""
    inner = np.zeros(grid, dtype=bool)
    inner[2:-2, 2:-2] = True

    def ring2(g: np.ndarray) -> np.ndarray:
        return np.where(inner, g, np.median(g))

    level_p = float(np.median([ring2(p).max() for p, _ in held]))
    level_f = float(np.median([ring2(f).max() for _, f in held]))

    def smoothed(sigma: float):
        return lambda p, f, a: ndimage.gaussian_filter(ring2(p), sigma, mode="nearest")

    def mixed(w: float):
        return lambda p, f, a: np.array([(1 - w) * ring2(p).max() / level_p + w * ring2(f).max() / level_f])

    return {
        "ring2s0.5": smoothed(0.5),
        "ring2s1.0": smoothed(1.0),
        "ring2free": lambda p, f, a: ring2(f),
        "ring2top3": lambda p, f, a: np.sort(ring2(p).ravel())[-3:].mean() * np.ones(1),
        "ring2mix0.25": mixed(0.25),
        "ring2mix0.5": mixed(0.5),
        "ring2maxr": lambda p, f, a: np.array([max(ring2(p).max() / level_p, ring2(f).max() / level_f)]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--only", nargs="*", default=[])
    parser.add_argument("--factor", type=float, default=1.15)
    parser.add_argument("--grow", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--config", default="{}", help="ExpertConfig fields as JSON")
    parser.add_argument("--backward", action="store_true", help="also the reference-to-query (absence) score")
    args = parser.parse_args()
    torch.set_num_threads(2)
    expert = PatchCoreExpert(
        ExpertConfig(heatmap=False, pose="fixed", **{"fixed_margin_cells": 0, **json.loads(args.config)})
    )
    summary: dict[str, list] = {}
    for name, draw, refs, queries in datasets(args.shots, args.draws, args.only):
        bank = expert.fit(refs)
        held = [grids(expert, bank, ref, exclude=i) for i, ref in enumerate(refs)]
        penalty = np.stack([p - f for p, f in held])  # (refs, rows, cols)
        allowance_raw = penalty.max(axis=0)
        qs = [(grids(expert, bank, image), kind) for image, kind in queries]
        if args.backward:
            inner2 = np.zeros(bank.grid, dtype=bool)
            inner2[2:-2, 2:-2] = True
            held_b = [backward(expert, bank, ref, exclude=i)[inner2].max() for i, ref in enumerate(refs)]
            q_b = np.array([backward(expert, bank, image)[inner2].max() for image, _ in queries])
            level_f = np.median([np.where(inner2, p, 0).max() for p, f in held])
            q_f = np.array([np.where(inner2, p, 0).max() for (p, f), _ in qs])
            lab = np.array([kind != "normal" for _, kind in queries])
            thr_b, thr_f = args.factor * np.median(held_b), args.factor * level_f
            for bname, sc in (
                ("fwd", q_f / thr_f),
                ("bwd", q_b / thr_b),
                ("max", np.maximum(q_f / thr_f, q_b / thr_b)),
                ("mean", 0.5 * (q_f / thr_f + q_b / thr_b)),
            ):
                kinds_b = [kind for _, kind in queries]
                per = {
                    k: float(np.mean(sc[[i for i, kk in enumerate(kinds_b) if kk == k]] >= 1.0))
                    for k in sorted(set(kinds_b))
                }
                summary.setdefault(f"{name}|B-{bname}", []).append((image_auroc(lab, sc), bacc(sc, lab, 1.0)))
                print(
                    f"   B-{bname:6s} AUROC {image_auroc(lab, sc):.3f} bal.acc {bacc(sc, lab, 1.0):.3f} "
                    + " ".join(f"{k}={v:.2f}" for k, v in per.items())
                )
        labels = np.array([kind != "normal" for _, kind in qs])
        kinds = [kind for _, kind in qs]
        rows = {}
        variants = {"margin0": lambda p, f, a: p, "free": lambda p, f, a: f}
        for grow in args.grow:
            allow = ndimage.maximum_filter(allowance_raw, size=2 * grow + 1) if grow else allowance_raw
            variants[f"allow{grow}"] = (lambda al: lambda p, f, a: f + np.maximum(0, p - f - al))(allow)
        for ring in (1, 2, 3):
            inner = np.zeros(bank.grid, dtype=bool)
            inner[ring:-ring, ring:-ring] = True
            variants[f"ring{ring}"] = (lambda m: lambda p, f, a: np.where(m, p, np.median(p)))(inner)
        variants.update(ring2_variants(bank.grid, held))
        for vname, fn in variants.items():
            level = np.median([fn(p, f, None).max() for p, f in held])
            scores = np.array([fn(p, f, None).max() for (p, f), _ in qs])
            thr = args.factor * level
            per_kind = {
                k: float(np.mean(scores[[i for i, kk in enumerate(kinds) if kk == k]] >= thr * 1.0))
                for k in sorted(set(kinds))
            }
            rows[vname] = (image_auroc(labels, scores), bacc(scores, labels, thr), per_kind)
            summary.setdefault(f"{name}|{vname}", []).append(rows[vname][:2])
        print(f"{name} draw {draw}")
        for vname, (auc, ba, per_kind) in rows.items():
            kinds_text = " ".join(f"{k}={v:.2f}" for k, v in per_kind.items())
            print(f"   {vname:8s} AUROC {auc:.3f} bal.acc {ba:.3f}  over-threshold: {kinds_text}", flush=True)
    print("\nmean over draws (AUROC, balanced accuracy):")
    for key, values in summary.items():
        arr = np.array(values)
        print(f"  {key:28s} {arr[:, 0].mean():.3f} {arr[:, 1].mean():.3f}")


if __name__ == "__main__":
    main()
