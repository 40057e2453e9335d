"""Region boxes from a pixel map: a wide plateau above the threshold is cut down to the defect's core."""

from __future__ import annotations

import numpy as np

from riad_agent.expert.regions import find_regions


def _identity(value: float) -> float:
    return min(1.0, value / 10.0)


def test_a_plateau_over_most_of_the_image_is_cut_to_its_peak() -> None:
    scores = np.full((100, 100), 1.2, dtype=np.float32)  # the whole texture a little over the threshold
    scores[40:50, 60:70] = 5.0  # the defect
    whole = find_regions(scores, 1.0, _identity)
    assert [(r.x0, r.y0, r.x1, r.y1) for r in whole] == [(0, 0, 100, 100)]
    cut = find_regions(scores, 1.0, _identity, max_share=0.10)
    assert [(r.x0, r.y0, r.x1, r.y1) for r in cut] == [(60, 40, 70, 50)]
    assert cut[0].score == whole[0].score  # the same peak


def test_regions_smaller_than_the_share_are_kept_as_they_are() -> None:
    scores = np.zeros((100, 100), dtype=np.float32)
    scores[10:30, 10:30] = 2.0  # 4 % of the image
    scores[15:18, 15:18] = 6.0
    scores[70:75, 70:90] = 3.0
    regions = find_regions(scores, 1.0, _identity, max_share=0.10)
    assert [(r.x0, r.y0, r.x1, r.y1) for r in regions] == [(10, 10, 30, 30), (70, 70, 90, 75)]
