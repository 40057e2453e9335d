"""A defect region's signature: the defect's own cells of the box, and how two signatures compare."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from riad_agent.data.synthetic import generate_sample
from riad_agent.errors import InvalidRequestError
from riad_agent.products import ImageEmbedder
from riad_agent.products.embedding import MASK_SHARE, describe_box, signature_similarity

SIZE = 256


def _box_cells(shape: tuple[int, int], box: tuple[int, int, int, int], size: int) -> int:
    rows, cols = shape
    x0, y0, x1, y1 = box
    c0, r0 = x0 * cols // size, y0 * rows // size
    c1, r1 = -(-x1 * cols // size), -(-y1 * rows // size)
    return (c1 - c0) * (r1 - r0)


def test_a_mask_picks_the_defects_cells_of_its_box_and_weights_outside_the_box_do_not_count(
    embedder: ImageEmbedder,
) -> None:
    # a thin, curved line: its box is mostly not scratch
    sample = generate_sample("washer", "scratch", 5, SIZE)
    assert sample.bbox is not None
    features = embedder.features(sample.image)
    every = features.region_cells(sample.bbox)
    picked = features.region_cells(sample.bbox, sample.mask.astype(np.float32), MASK_SHARE)
    for layer, (all_cells, defect_cells) in enumerate(zip(every, picked, strict=True)):
        grid = features.maps[(1, 2)[layer]].shape[-2:]
        assert len(all_cells) == _box_cells((int(grid[0]), int(grid[1])), sample.bbox, SIZE)
        assert 0 < len(defect_cells) < len(all_cells)
        assert np.allclose(np.linalg.norm(defect_cells, axis=1), 1.0, atol=1e-5)
    # a bright blob outside the box changes nothing: only the box's pixels weigh
    elsewhere = sample.mask.astype(np.float32)
    x0, y0 = sample.bbox[:2]
    far = np.zeros_like(elsewhere)
    far[0:20, 0:20] = 5.0
    if x0 < 20 and y0 < 20:  # keep the blob away from the box whatever the seed
        far = np.flip(far)
    again = features.region_cells(sample.bbox, elsewhere + far, MASK_SHARE)
    assert all(np.array_equal(a, b) for a, b in zip(picked, again, strict=True))
    # the expert's prior map is square at its own side: it is stretched over the image, not sliced
    small = np.asarray(
        Image.fromarray(sample.mask.astype(np.float32), mode="F").resize((64, 64), Image.Resampling.BILINEAR)
    )
    coarse = features.region_cells(sample.bbox, small, MASK_SHARE)
    assert all(0 < len(c) <= len(a) for c, a in zip(coarse, every, strict=True))
    assert abs(len(coarse[1]) - len(picked[1])) <= 2  # about the same s16 cells from a 64 px map
    with pytest.raises(InvalidRequestError, match="2-D"):
        features.region_cells(sample.bbox, np.zeros((SIZE, SIZE, 3), dtype=np.float32))


def test_a_region_is_most_like_itself_and_more_like_its_own_type_than_another(
    embedder: ImageEmbedder,
) -> None:
    def signature(kind: str, seed: int):  # type: ignore[no-untyped-def]
        sample = generate_sample("tile", kind, seed, SIZE)
        assert sample.bbox is not None
        words = describe_box(sample.image, sample.mask, sample.bbox, refine=False)
        # a soft map, as the expert gives
        weights = ndimage.gaussian_filter(sample.mask.astype(np.float32), 2)
        return embedder.features(sample.image).region_signature(sample.bbox, words, weights)

    crack, other_crack, hole = signature("crack", 1), signature("crack", 2), signature("hole", 3)
    assert signature_similarity(crack, crack) > 0.999
    assert signature_similarity(crack, other_crack) > signature_similarity(crack, hole)
    assert signature_similarity(crack, hole) == signature_similarity(hole, crack)  # both ways, the same
