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


def test_pieces_whose_boxes_overlap_or_touch_are_one_region_and_apart_stay_apart() -> None:
    scores = np.zeros((100, 100), dtype=np.float32)
    scores[10:30, 10:14] = 4.0  # an L ...
    scores[26:30, 14:40] = 4.0
    scores[12:20, 25:30] = 2.0  # ... and a piece inside its box, not touching it
    scores[40:50, 20:24] = 3.0  # two slivers meeting only at a corner (not 4-connected)
    scores[50:60, 24:28] = 5.0
    scores[80:90, 80:90] = 6.0  # far away: its own region
    regions = find_regions(scores, 1.0, _identity)
    boxes = {(r.x0, r.y0, r.x1, r.y1): (r.score, r.area) for r in regions}
    assert set(boxes) == {(80, 80, 90, 90), (10, 10, 40, 30), (20, 40, 28, 60)}
    assert boxes[(10, 10, 40, 30)] == (0.4, 80 + 104 + 40)  # the stronger piece's score, areas summed
    assert boxes[(20, 40, 28, 60)] == (0.5, 80)
