"""Leave-one-out exemplars for `riad eval qa`'s "+ exemplars" row, on generated washers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from PIL import Image
from support.fakes import FakeKnowledge

from riad_agent.data.synthetic import write_mvtec_layout
from riad_agent.errors import InvalidRequestError
from riad_agent.eval.mmad import read_answers
from riad_agent.eval.qa_ablation import ablation_steps, run_ablation
from riad_agent.eval.qa_exemplars import LeaveOneOutExemplars
from riad_agent.expert.expert import ExpertConfig, PatchCoreExpert
from riad_agent.models.tiny import build_tiny_qwen2_vl
from riad_agent.question_sets.mmad_layout import write_mmad_layout
from riad_agent.question_sets.sources import mvtec_set

torch.set_num_threads(1)
KEY = "Synthetic"


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("parts")
    write_mvtec_layout(
        root,
        ["synthetic/washer"],
        n_train=4,
        n_test_good=1,
        n_test_per_defect=2,
        seed=3,
        defects=["hole", "scratch"],
    )
    return root


@pytest.fixture(scope="module")
def expert() -> PatchCoreExpert:
    return PatchCoreExpert(ExpertConfig(heatmap=False))


def _references(parts: Path) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted((parts / "washer" / "train" / "good").glob("*.png"))]


def test_each_image_is_typed_by_the_others_only(parts: Path, expert: PatchCoreExpert) -> None:
    pool = LeaveOneOutExemplars({KEY: parts}, k=1)
    references = _references(parts)
    typed = 0
    for path in sorted((parts / "washer" / "test").glob("*/*.png")):
        if path.parent.name == "good":
            continue
        key = f"{KEY}/washer/test/{path.parent.name}/{path.name}"
        image = Image.open(path).convert("RGB")
        anomaly = expert.analyse(image, references)
        if anomaly.score <= 0.45 or not anomaly.regions:
            assert pool.typing(key, image, anomaly) is None  # the type_defect node's rule
            continue
        found = pool.typing(key, image, anomaly)
        assert found is not None
        typing, hints = found
        typed += 1
        assert {kind for kind, _ in typing.matches} == {"hole", "scratch"}
        assert key not in typing.exemplars  # never its own exemplar
        assert [h.defect_type for h in hints] == [kind for kind, _ in typing.matches]
        assert all(h.crop is not None and h.crop.width > 0 for h in hints)
        # the same draw every time
        again = pool.typing(key, image, anomaly)
        assert again is not None and again[0] == typing
        # no region: nothing said, whatever the score
        assert pool.typing(key, image, dataclasses.replace(anomaly, regions=[])) is None
    assert typed >= 2
    image = Image.open(next((parts / "washer" / "test" / "hole").glob("*.png"))).convert("RGB")
    anomaly = expert.analyse(image, references)
    assert pool.typing("VisA/washer/test/hole/000.png", image, anomaly) is None  # another dataset
    assert pool.typing(f"{KEY}/washer/train/good/000.png", image, anomaly) is None
    with pytest.raises(ValueError, match="k must be"):
        LeaveOneOutExemplars({KEY: parts}, k=0)


def test_the_exemplars_row_asks_with_them_and_needs_the_pool(
    parts: Path, expert: PatchCoreExpert, tmp_path: Path
) -> None:
    root = tmp_path / "questions"
    write_mmad_layout(mvtec_set(parts, "test", knowledge_dataset="synthetic", key_dataset=KEY), root, seed=0)
    steps = ablation_steps(steps=1, shots=4, exemplars=1)
    assert [s.slug for s in steps][-3:] == ["expert_prior", "verdict", "exemplars"]
    row = steps[-1]
    assert row.config.exemplars == 1 and row.config.knowledge and row.config.latent
    vlm = build_tiny_qwen2_vl("qwen2_vl", seed=0)
    with pytest.raises(InvalidRequestError, match="needs the labelled source folder"):
        run_ablation(root, vlm, [row], tmp_path / "a", FakeKnowledge(), expert)
    pool = LeaveOneOutExemplars({KEY: parts}, k=1)
    rows = run_ablation(root, vlm, [row], tmp_path / "b", FakeKnowledge(), expert, exemplars=pool)
    answers = read_answers(tmp_path / "b" / "exemplars.jsonl")
    assert rows[0].scores.counted == len(answers) > 0
    assert all(a.exemplar_type is None for a in answers if "/good/" in a.image)
    assert any(a.exemplar_type in {"hole", "scratch"} for a in answers)
