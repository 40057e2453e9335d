"""Fixtures of the tool tests: generated images and an inspector on fake components."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner, part_image

from riad_agent.components import build_components
from riad_agent.inspector import Inspector
from riad_agent.settings import Settings


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for name, defect, seed in (("good", False, 1), ("bad", True, 2), ("ref0", False, 3)):
        path = tmp_path / f"{name}.png"
        part_image(defect, seed=seed).save(path)
        paths[name] = path
    return paths


@pytest.fixture
def inspector(tmp_path: Path) -> Inspector:
    settings = Settings(data_dir=tmp_path / "data", allowed_roots=[tmp_path])
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=FakeExpert(), reasoner=FakeReasoner()
    )
    return Inspector(components=components)
