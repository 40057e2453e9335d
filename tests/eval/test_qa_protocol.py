"""`riad eval qa` measures what MMAD measures: the one-shot protocol, k-shot beside it, option bias."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from PIL import Image
from support.fakes import FakeKnowledge
from typer.testing import CliRunner

from riad_agent.cli import app
from riad_agent.data.synthetic import write_mvtec_layout
from riad_agent.eval.mmad import read_answers, reversed_options
from riad_agent.eval.qa_ablation import ablation_markdown, ablation_steps, run_ablation
from riad_agent.expert.expert import ExpertConfig, PatchCoreExpert
from riad_agent.models.tiny import build_tiny_qwen2_vl
from riad_agent.protocols import AnomalyMap, Pose
from riad_agent.question_sets.mmad_layout import write_mmad_layout
from riad_agent.question_sets.sources import mvtec_set
from riad_agent.schemas import MultipleChoiceQuestion

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def question_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    parts = tmp_path_factory.mktemp("parts")
    write_mvtec_layout(
        parts, ["synthetic/washer"], n_train=5, n_test_good=1, n_test_per_defect=1, seed=2, defects=["hole"]
    )
    data = mvtec_set(parts, "test", knowledge_dataset="synthetic", key_dataset="Synthetic")
    root = tmp_path_factory.mktemp("questions")
    write_mmad_layout(data, root, seed=0)
    return root


class CountingExpert(PatchCoreExpert):
    """The real expert, recording how many references each analysis got."""

    def __init__(self) -> None:
        super().__init__(ExpertConfig(heatmap=False))
        self.references: list[int] = []
        self.poses: list[Pose | None] = []

    def analyse(
        self,
        image: Image.Image,
        references: Sequence[Image.Image],
        *,
        pose: Pose | None = None,
        pose_source: str = "knowledge",
    ) -> AnomalyMap:
        self.references.append(len(references))
        self.poses.append(pose)
        return super().analyse(image, references, pose=pose, pose_source=pose_source)


def test_reversed_options_keep_the_correct_option() -> None:
    question = MultipleChoiceQuestion(text="q", options={"A": "x", "B": "y", "C": "z"})
    flipped, correct = reversed_options(question, "A")
    assert flipped.options == {"A": "z", "B": "y", "C": "x"} and correct == "C"
    assert reversed_options(question, "B")[1] == "B"


def test_the_headline_is_one_shot_and_k_shot_goes_beside(question_set: Path, tmp_path: Path) -> None:
    steps = ablation_steps(steps=1)
    assert all(
        s.config.shots == 1 and s.config.expert_shots == 1 for s in steps
    )  # the expert sees what the model sees
    vlm = build_tiny_qwen2_vl("qwen2_vl", seed=0)
    expert = CountingExpert()
    base = [s for s in steps if s.slug == "base"]
    rows = run_ablation(
        question_set, vlm, base, tmp_path, FakeKnowledge(), expert, reverse_options=True, beside_shots=(4,)
    )
    questions = rows[0].scores.counted
    # headline and reversed: 1 reference each; the 4-shot figures beside: 4
    assert expert.references == [1] * (2 * questions) + [4] * questions
    row = rows[0]
    assert set(row.by_shots) == {4} and row.bias is not None and row.reversed_bias is not None
    flipped = read_answers(tmp_path / "reversed" / "base.jsonl")
    straight = {(a.image, a.question_index): a for a in read_answers(tmp_path / "base.jsonl")}
    for answer in flipped:  # the same question, options reversed, the correct option followed
        original = straight[(answer.image, answer.question_index)]
        assert list(answer.options.values()) == list(original.options.values())[::-1]
        assert answer.options[answer.correct_answer] == original.options[original.correct_answer]
    table = ablation_markdown(rows)
    assert "| MMAD avg 4-shot | AD 4-shot |" in table and "acc reversed" in table


def test_rows_with_knowledge_give_the_expert_the_categorys_pose(question_set: Path, tmp_path: Path) -> None:
    """As an inspection naming the category would: the knowledge entry's pose reaches the expert."""
    knowledge = FakeKnowledge()
    knowledge.poses["synthetic/washer"] = "fixed"
    steps = {s.slug: s for s in ablation_steps(steps=1)}
    vlm = build_tiny_qwen2_vl("qwen2_vl", seed=0)
    expert = CountingExpert()
    run_ablation(question_set, vlm, [steps["base"]], tmp_path / "base", knowledge, expert)
    assert expert.poses and set(expert.poses) == {None}  # no knowledge: the expert infers the pose
    expert.poses.clear()
    run_ablation(question_set, vlm, [steps["knowledge"]], tmp_path / "knowledge", knowledge, expert)
    assert expert.poses and set(expert.poses) == {"fixed"}


def test_cli_rejects_bad_shots(tmp_path: Path) -> None:
    (tmp_path / "questions").mkdir()
    (tmp_path / "questions" / "mmad.json").write_text("{}")
    result = CliRunner().invoke(app, ["eval", "qa", "--shots", "1,x", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--shots" in result.output
