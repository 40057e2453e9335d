"""The `riad eval qa` ablation on a generated question set, with the tiny random Qwen2-VL."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support.fakes import FakeKnowledge
from typer.testing import CliRunner

from riad_agent.cli import app
from riad_agent.data.synthetic import write_mvtec_layout
from riad_agent.eval.mmad import read_answers
from riad_agent.eval.qa_ablation import ablation_markdown, ablation_steps, run_ablation
from riad_agent.expert.expert import ExpertConfig, PatchCoreExpert
from riad_agent.models.tiny import build_tiny_qwen2_vl
from riad_agent.question_sets.mmad_layout import write_mmad_layout
from riad_agent.question_sets.sources import mvtec_set

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def question_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    parts = tmp_path_factory.mktemp("parts")
    write_mvtec_layout(
        parts, ["synthetic/washer"], n_train=4, n_test_good=1, n_test_per_defect=1, seed=2, defects=["hole"]
    )
    data = mvtec_set(parts, "test", knowledge_dataset="synthetic", key_dataset="Synthetic")
    root = tmp_path_factory.mktemp("questions")
    counts = write_mmad_layout(data, root, seed=0)
    assert counts == {"images": 2, "questions": 3 + 7}
    return root


def test_rows_run_score_resume_and_tabulate(question_set: Path, tmp_path: Path) -> None:
    vlm = build_tiny_qwen2_vl("qwen2_vl", seed=0)
    steps = ablation_steps(steps=1, shots=4)
    assert [s.slug for s in steps] == [
        "no_evidence",
        "base",
        "knowledge",
        "latent",
        "injection",
        "expert_prior",
        "verdict",
        "exemplars",
    ]
    assert [s.config.follow_verdict for s in steps] == [False] * 6 + [True] * 2
    chosen = [steps[1], steps[5]]
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    rows = run_ablation(question_set, vlm, chosen, tmp_path, FakeKnowledge(), expert)
    assert [r.step.slug for r in rows] == ["base", "expert_prior"]
    assert all(r.scores.counted == 10 and r.scores.dropped == 0 for r in rows)
    answers = read_answers(tmp_path / "expert_prior.jsonl")
    assert len(answers) == 10 and all(a.knowledge_ids for a in answers)  # knowledge is on in that row
    assert not any(a.knowledge_ids for a in read_answers(tmp_path / "base.jsonl"))
    again = run_ablation(question_set, vlm, chosen[:1], tmp_path, FakeKnowledge(), expert)
    assert again[0].scores == rows[0].scores  # resumed: nothing asked twice
    table = ablation_markdown(rows)
    assert table.splitlines()[0].startswith("| configuration | MMAD avg | Anomaly Detection")
    assert "| + expert prior |" in table and "Synthetic avg" in table


def test_cli_rejects_unknown_rows_and_empty_sets(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "qa", "--elpv", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "nothing to ask about" in result.output
    (tmp_path / "questions").mkdir()
    (tmp_path / "questions" / "mmad.json").write_text("{}")
    result = CliRunner().invoke(app, ["eval", "qa", "--rows", "base,bogus", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown row(s) bogus" in result.output
