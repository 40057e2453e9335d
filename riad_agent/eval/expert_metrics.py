"""Anomaly-detection metrics: image AUROC, pixel AUROC and the normalised AUPRO up to a false-positive rate.

AUROC is the Mann-Whitney statistic (ties count one half), computed from ranks. AUPRO follows
Bergmann et al. (MVTec AD): for every threshold, the per-region overlap (PRO) is the mean, over all
connected ground-truth regions of all images, of the fraction of the region's pixels above the
threshold; the false-positive rate is taken over all normal pixels of all images. The PRO curve is
integrated over FPR in [0, max_fpr] and divided by max_fpr, so a perfect map scores 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.stats import rankdata


def auroc(labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve; ``nan`` when only one class is present."""
    y = np.asarray(labels, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    positives = int(y.sum())
    negatives = int(y.size - positives)
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(s)
    rank_sum = float(ranks[y].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def image_auroc(labels: Sequence[bool], scores: Sequence[float]) -> float:
    """Image-level AUROC (label True = anomalous)."""
    return auroc(labels, scores)


def pixel_auroc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> float:
    """Pixel-level AUROC over all pixels of all images."""
    _check_pairs(masks, maps)
    return auroc(np.concatenate([m.ravel() for m in masks]), np.concatenate([a.ravel() for a in maps]))


def _check_pairs(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> None:
    if len(masks) != len(maps):
        raise ValueError(f"{len(masks)} masks but {len(maps)} maps")
    for mask, amap in zip(masks, maps, strict=True):
        if mask.shape != amap.shape:
            raise ValueError(f"mask shape {mask.shape} differs from map shape {amap.shape}")


def pro_curve(
    masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], max_fpr: float = 0.3, steps: int = 2000
) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, pro) at thresholds spanning FPR 0 .. max_fpr, fpr increasing; exact at each threshold."""
    _check_pairs(masks, maps)
    negatives = np.sort(
        np.concatenate([a[~m.astype(bool)].ravel() for m, a in zip(masks, maps, strict=True)])
    )
    if negatives.size == 0:
        raise ValueError("AUPRO needs normal (negative) pixels")
    regions: list[np.ndarray] = []
    for mask, amap in zip(masks, maps, strict=True):
        labels, count = ndimage.label(mask.astype(bool))
        for index in range(1, count + 1):
            regions.append(np.sort(amap[labels == index].ravel()))
    if not regions:
        raise ValueError("AUPRO needs at least one anomalous region")
    # thresholds: the negative-score quantiles for FPR in [0, max_fpr], plus +inf (FPR 0, PRO 0)
    targets = np.linspace(0.0, max_fpr, steps)
    index = np.clip(np.ceil((1.0 - targets) * negatives.size).astype(int) - 1, 0, negatives.size - 1)
    thresholds = np.concatenate([[np.inf], negatives[index]])
    fpr = 1.0 - np.searchsorted(negatives, thresholds, side="right") / negatives.size
    pro = np.zeros_like(thresholds)
    for region in regions:
        pro += 1.0 - np.searchsorted(region, thresholds, side="right") / region.size
    pro /= len(regions)
    order = np.argsort(fpr, kind="stable")
    return fpr[order], pro[order]


def aupro(
    masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], max_fpr: float = 0.3, steps: int = 2000
) -> float:
    """Area under the PRO curve up to ``max_fpr``, divided by ``max_fpr`` (1.0 = perfect)."""
    fpr, pro = pro_curve(masks, maps, max_fpr, steps)
    keep = fpr <= max_fpr
    fpr, pro = fpr[keep], pro[keep]
    if fpr[-1] < max_fpr:  # extend the last PRO value to the FPR limit (step interpolation)
        fpr = np.append(fpr, max_fpr)
        pro = np.append(pro, pro[-1])
    return float(np.trapezoid(pro, fpr) / max_fpr)
