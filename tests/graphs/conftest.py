"""Fixtures of the graph tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fakes import part_image

from riad_agent.settings import Settings


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for name, defect, seed in (("good", False, 1), ("bad", True, 2), ("ref0", False, 3), ("ref1", False, 4)):
        path = tmp_path / f"{name}.png"
        part_image(defect, seed=seed).save(path)
        paths[name] = path
    return paths


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", reasoner_timeout_s=2.0)


@pytest.fixture
def big_images(tmp_path: Path) -> dict[str, Path]:
    """A 2048x1536 defective part and a normal reference of the same size."""
    paths = {}
    for name, defect, seed in (("big", True, 5), ("big_ref", False, 6)):
        path = tmp_path / f"{name}.png"
        part_image(defect, size=(2048, 1536), seed=seed).save(path, compress_level=1)
        paths[name] = path
    return paths
