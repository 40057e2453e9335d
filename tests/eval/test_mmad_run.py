"""End-to-end MMAD runs on the generated fixture with the tiny random Qwen2-VL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from support.fakes import FakeKnowledge
from support.mmad_fixture import FIXTURE_QUESTIONS, build_mmad_fixture
from typer.testing import CliRunner

from riad_agent.commands.eval_mmad import eval_mmad
from riad_agent.eval.mmad import (
    MmadRunConfig,
    build_mmad_reasoner,
    knowledge_category,
    read_answers,
    run_mmad,
    select_questions,
)
from riad_agent.eval.mmad_data import load_mmad
from riad_agent.models.tiny import build_tiny_qwen2_vl


@pytest.fixture(scope="module")
def mmad_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mmad_fixture(tmp_path_factory.mktemp("mmad"))


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(eval_mmad)
    return app


def test_fixture_reads_as_mmad(mmad_root: Path) -> None:
    items = load_mmad(mmad_root)
    assert sum(len(item.conversation) for item in items.values()) == FIXTURE_QUESTIONS
    assert {key.split("/")[0] for key in items} == {"MVTec-AD", "VisA"}
    picked = select_questions(items, 5, seed=3)
    assert len(picked) == 5 and picked == select_questions(items, 5, seed=3)
    assert picked != select_questions(items, 5, seed=4)


def test_cli_runs_scores_and_resumes(mmad_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    args = ["--data", str(mmad_root), "--sample", "4", "--steps", "1", "--rationale-tokens", "2"]
    args += ["--out", str(out), "--json"]
    first = CliRunner().invoke(_app(), args)
    assert first.exit_code == 0, first.output
    result = json.loads(first.stdout)
    assert result["answered"] == 4 and result["skipped"] == 0
    assert result["model_id"] == "tiny-random-qwen2-vl"
    answers = out / "answers_1_shot_tiny-random-qwen2-vl_latent1.jsonl"
    lines = answers.read_text().splitlines()
    assert len(lines) == 4
    record = json.loads(lines[0])
    assert record["gpt_answer"] in record["options"]  # the fuzzy fallback always lands on an option
    csv_path = out / "answers_1_shot_tiny-random-qwen2-vl_latent1_accuracy.csv"
    assert csv_path.read_text().splitlines()[0].endswith("Average,Recall,Precision,F1")
    counted = result["scores"]["counted"]
    assert counted == 4

    # a killed run leaves a torn line: it is cut and nothing is asked twice
    with answers.open("a") as handle:
        handle.write('{"image": "MVTec-AD/wash')
    second = CliRunner().invoke(_app(), args)
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)
    assert again["answered"] == 0 and again["skipped"] == 4
    assert again["scores"] == result["scores"]
    assert len(answers.read_text().splitlines()) == 4


def test_cli_reports_missing_data_as_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["--data", str(tmp_path), "--sample", "1"])
    assert result.exit_code == 2
    assert "InvalidRequestError" in result.output and "Traceback" not in result.output


def test_plain_and_latent_use_the_same_reasoner_settings_but_the_method(
    mmad_root: Path, tmp_path: Path
) -> None:
    vlm = build_tiny_qwen2_vl("qwen2_vl", seed=0)
    plain = build_mmad_reasoner(vlm, MmadRunConfig(latent=False))
    latent = build_mmad_reasoner(vlm, MmadRunConfig(latent=True, latent_steps=3))
    assert plain.config.steps == 0 and not plain.config.inject_patches
    assert latent.config.steps == 3 and latent.config.inject_patches
    same = {"latent_tokens", "rationale_tokens", "reward", "perturbations", "instruction"}
    assert all(getattr(plain.config, k) == getattr(latent.config, k) for k in same)

    knowledge = FakeKnowledge()
    config = MmadRunConfig(shots=0, knowledge=True, latent=False, sample=2, seed=1, rationale_tokens=2)
    path = tmp_path / "answers.jsonl"
    run = run_mmad(mmad_root, plain, config, path, knowledge=knowledge)
    answers = read_answers(path)
    assert run.answered == 2 and len(answers) == 2
    washer = [a for a in answers if a.image.startswith("MVTec-AD/washer")]
    for answer in washer:
        assert answer.category == "synthetic/washer" and answer.knowledge_ids
    assert knowledge_category(knowledge, "VisA/fabric/test/good/000.png") is None
    assert len(knowledge.searches) == len(washer)
