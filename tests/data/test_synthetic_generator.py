"""The synthetic generator: deterministic, defects only where the mask says, MVTec layout on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from riad_agent.data.synthetic import CATEGORIES, DEFECTS, generate_sample, write_mvtec_layout
from riad_agent.errors import InvalidRequestError


def _digest(sample) -> str:
    return hashlib.sha256(sample.image.tobytes() + sample.mask.tobytes()).hexdigest()


@pytest.mark.parametrize("category", CATEGORIES)
def test_same_seed_gives_identical_bytes_and_other_seeds_differ(category: str) -> None:
    a = generate_sample(category, "scratch", seed=7, size=128)
    b = generate_sample(category, "scratch", seed=7, size=128)
    c = generate_sample(category, "scratch", seed=8, size=128)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


@pytest.mark.parametrize("category", CATEGORIES)
@pytest.mark.parametrize("defect", DEFECTS)
def test_defect_changes_exactly_the_masked_pixels(category: str, defect: str) -> None:
    for seed in (1, 2):
        normal = np.asarray(generate_sample(category, None, seed=seed, size=160).image).astype(int)
        sample = generate_sample(category, defect, seed=seed, size=160)
        image = np.asarray(sample.image).astype(int)
        changed = (image != normal).any(axis=-1)
        assert sample.mask.dtype == bool and sample.mask.shape == (160, 160)
        assert sample.mask.sum() >= 20, "a defect must be visible"
        np.testing.assert_array_equal(changed, sample.mask)
        rows, cols = np.nonzero(sample.mask)
        assert sample.bbox == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        # visible: the mean colour change inside the mask is far above the sensor noise (~2-3 levels)
        assert np.abs(image - normal)[sample.mask].max(axis=-1).mean() > 15


def test_normal_samples_vary_a_little_but_stay_consistent() -> None:
    images = [
        np.asarray(generate_sample("synthetic/washer", None, seed=s).image, dtype=float) for s in range(4)
    ]
    pairwise = [np.abs(images[0] - other).mean() for other in images[1:]]
    assert all(value > 1.0 for value in pairwise), "normal samples must not be copies of each other"
    assert all(value < 30.0 for value in pairwise), "normal samples must look alike"
    normal = generate_sample("washer", None, seed=3)
    assert normal.defect is None and normal.bbox is None and not normal.mask.any()
    assert normal.category == "synthetic/washer" and normal.image.mode == "RGB"


def test_unknown_names_raise_typed_errors() -> None:
    with pytest.raises(InvalidRequestError, match="category"):
        generate_sample("synthetic/banana", None, seed=0)
    with pytest.raises(InvalidRequestError, match="defect"):
        generate_sample("synthetic/washer", "dent", seed=0)
    with pytest.raises(InvalidRequestError):
        generate_sample("synthetic/washer", None, seed=-1)


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.png"))
    }


def test_mvtec_layout_is_complete_and_deterministic(tmp_path: Path) -> None:
    kwargs = {
        "categories": ["synthetic/fabric"],
        "n_train": 3,
        "n_test_good": 2,
        "n_test_per_defect": 1,
        "seed": 5,
        "size": 96,
        "defects": ["hole", "stain"],
    }
    write_mvtec_layout(tmp_path / "a", **kwargs)
    write_mvtec_layout(tmp_path / "b", **kwargs)
    tree = _tree(tmp_path / "a")
    assert tree == _tree(tmp_path / "b")
    assert sorted(tree) == sorted(
        [f"fabric/train/good/{i:03d}.png" for i in range(3)]
        + [f"fabric/test/good/{i:03d}.png" for i in range(2)]
        + ["fabric/test/hole/000.png", "fabric/test/stain/000.png"]
        + ["fabric/ground_truth/hole/000_mask.png", "fabric/ground_truth/stain/000_mask.png"]
    )
    mask = np.asarray(Image.open(tmp_path / "a/fabric/ground_truth/hole/000_mask.png"))
    assert set(np.unique(mask).tolist()) == {0, 255}
    train = [np.asarray(Image.open(tmp_path / f"a/fabric/train/good/{i:03d}.png")) for i in range(3)]
    assert not np.array_equal(train[0], train[1]), "each file is a different sample"
