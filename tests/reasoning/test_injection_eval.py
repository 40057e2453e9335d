"""`riad eval injection`'s logic: kept patches on generated defects; a broken selector fails it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from support.tiny_models import build_tiny_qwen2_vl

from riad_agent.eval import injection_eval
from riad_agent.eval.injection_eval import (
    InjectionCase,
    chance_of_hit,
    generated_cases,
    mvtec_cases,
    overlaps,
    run_injection_eval,
)
from riad_agent.evidence import StoredPrior
from riad_agent.reasoning import latent_loop
from riad_agent.reasoning.config import LatentConfig
from riad_agent.reasoning.reasoner import LatentReasoner
from riad_agent.schemas import PatchRef

torch.set_num_threads(1)


class MaskExpert:
    """An expert whose prior map is the case's ground-truth mask (looked up by image identity)."""

    backbone_id = "mask"

    def __init__(self, cases: Sequence[InjectionCase]) -> None:
        self.masks = {id(case.image): case.mask for case in cases}

    def analyse(
        self,
        image: Image.Image,
        references: Sequence[Image.Image],
        *,
        pose: Any = None,
        pose_source: str = "knowledge",
    ) -> Any:
        return StoredPrior(0.9, self.masks[id(image)].astype(np.float32))


def test_overlap_and_chance() -> None:
    mask = np.zeros((40, 40), dtype=bool)
    mask[30:40, 0:10] = True  # bottom-left cell of a 4x4 grid
    on = PatchRef(index=12, row=3, col=0, box=(0, 30, 10, 40), score=1.0)
    off = PatchRef(index=0, row=0, col=0, box=(0, 0, 10, 10), score=1.0)
    assert overlaps([off, on], mask) and not overlaps([off], mask)
    assert chance_of_hit([off], mask) == pytest.approx(1 / 16)
    assert chance_of_hit([off, on], mask) == pytest.approx(1 - (15 * 14) / (16 * 15))


def test_kept_patches_hit_generated_defects_and_a_broken_selector_misses(monkeypatch: Any) -> None:
    vlm = build_tiny_qwen2_vl("qwen2_vl", seed=3)
    cases = list(generated_cases(4, size=64, references=1))
    assert len(cases) == 4 and all(case.mask.any() for case in cases)
    reasoner = LatentReasoner(vlm, LatentConfig(patches=2, rationale_tokens=1))
    good = run_injection_eval(reasoner, MaskExpert(cases), cases, steps=1)
    assert good.total.cases == 4 and good.total.kept_rate == 1.0 and good.total.kept_none == 0

    def inverted(attention: Any, prior: Any, weight: float, selection: str = "prior") -> torch.Tensor:
        return 1.0 - prior  # a selector that avoids the evidence

    monkeypatch.setattr(latent_loop, "score_patches", inverted)
    broken = run_injection_eval(reasoner, MaskExpert(cases), cases, steps=1)
    assert broken.total.kept_rate < 0.9 and len(broken.misses) >= 1


def test_mvtec_cases_read_masks(tmp_path: Path) -> None:
    root = tmp_path / "widget"
    for folder in ("train/good", "test/good", "test/dent", "ground_truth/dent"):
        (root / folder).mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(root / "train/good/000.png")
    Image.new("RGB", (32, 32)).save(root / "test/dent/000.png")
    Image.new("RGB", (32, 32)).save(root / "test/dent/001.png")  # no mask: skipped
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[4:8, 4:8] = 255
    Image.fromarray(mask).save(root / "ground_truth/dent/000_mask.png")
    found = list(mvtec_cases(tmp_path))
    assert [(c.source, c.name) for c in found] == [("mvtec/widget", "widget/dent/000.png")]
    assert int(found[0].mask.sum()) == 16 and len(found[0].references) == 1
    assert injection_eval.injection_markdown(injection_eval.InjectionEvalResult()).startswith("| source")
