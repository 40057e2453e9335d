"""AUROC and AUPRO against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from riad_agent.eval.expert_metrics import aupro, auroc, image_auroc, pixel_auroc, pro_curve


def test_auroc_counts_ordered_pairs() -> None:
    # pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3 of 4
    assert image_auroc([False, False, True, True], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    assert auroc([0, 0, 1], [0.2, 0.3, 0.1]) == pytest.approx(0.0)
    assert math.isnan(auroc([1, 1], [0.1, 0.2]))
    with pytest.raises(ValueError):
        auroc([0, 1, 1], [0.1, 0.2])


def test_pixel_auroc_pools_all_pixels() -> None:
    masks = [np.array([[0, 1], [0, 0]], bool), np.array([[0, 0], [0, 1]], bool)]
    maps = [np.array([[0.1, 0.9], [0.2, 0.3]]), np.array([[0.4, 0.5], [0.6, 0.35]])]
    # positives 0.9 and 0.35; negatives 0.1 0.2 0.3 0.4 0.5 0.6 -> (6 + 3) / 12
    assert pixel_auroc(masks, maps) == pytest.approx(9 / 12)


def test_aupro_perfect_missed_and_half() -> None:
    mask = np.zeros((6, 6), bool)
    mask[0:2, 0:2] = True
    mask[4:6, 4:6] = True
    perfect = np.where(mask, 1.0, 0.0)
    assert aupro([mask], [perfect]) == pytest.approx(1.0)
    inverted = np.where(mask, 0.0, 1.0)
    assert aupro([mask], [inverted]) == pytest.approx(0.0)
    half = np.zeros((6, 6))
    half[0:2, 0:2] = 1.0  # first region above every normal pixel, second below all of them
    half[mask & (half == 0)] = -1.0
    assert aupro([mask], [half]) == pytest.approx(0.5)


def test_aupro_by_hand_with_one_false_positive() -> None:
    # one image of 10 pixels: a region of 2 pixels (0.9, 0.5), normals seven at 0.1 and one at 0.95.
    mask = np.array([[1, 1, 0, 0, 0, 0, 0, 0, 0, 0]], bool)
    amap = np.array([[0.9, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.95]])
    fpr, pro = pro_curve([mask], [amap])
    # thresholds: above 0.95 -> (fpr 0, pro 0); at 0.1 -> (fpr 1/8, pro 1).
    assert fpr.max() == pytest.approx(0.125) and pro.max() == pytest.approx(1.0)
    # trapezoid (0,0)-(0.125,1) = 0.0625, then flat 1 up to 0.3 = 0.175; divided by 0.3
    assert aupro([mask], [amap]) == pytest.approx((0.0625 + 0.175) / 0.3)


def test_aupro_needs_regions_and_normals() -> None:
    with pytest.raises(ValueError):
        aupro([np.zeros((3, 3), bool)], [np.zeros((3, 3))])
    with pytest.raises(ValueError):
        aupro([np.ones((3, 3), bool)], [np.zeros((3, 3))])
