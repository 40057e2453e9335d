"""`riad eval expert` on a tiny generated MVTec-layout folder, through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from riad_agent.commands.eval_expert import eval_expert
from riad_agent.data.synthetic import write_mvtec_layout
from riad_agent.eval.expert_eval import confidently_wrong

app = typer.Typer()
app.command()(eval_expert)


def test_eval_command_reports_metrics_per_category_and_mean(tmp_path: Path) -> None:
    write_mvtec_layout(
        tmp_path,
        ["synthetic/washer"],
        n_train=4,
        n_test_good=3,
        n_test_per_defect=1,
        seed=1,
        size=128,
        defects=["hole", "stain", "colour"],
    )
    result = CliRunner().invoke(app, ["--data", str(tmp_path), "--size", "128", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    (washer,) = report["categories"]
    assert washer["category"] == "washer"
    assert (washer["n_references"], washer["n_test_good"], washer["n_test_anomalous"]) == (4, 3, 3)
    assert washer["image_auroc"] >= 0.99
    assert washer["pixel_auroc"] >= 0.95
    assert 0.5 < washer["aupro_30"] <= 1.0
    assert washer["ms_per_image"] > 0
    assert report["mean"]["image_auroc"] == washer["image_auroc"]
    assert 0.5 <= washer["verdict_balanced_accuracy"] <= 1.0 and 0.0 <= washer["uncertain_fraction"] <= 1.0
    assert washer["pose"].endswith("(references)")
    assert (
        washer["confidently_wrong"] == 0.0
    )  # the washer's clear defects: no answer is wrong, let alone sure

    two_shot = CliRunner().invoke(app, ["--data", str(tmp_path), "--size", "128", "--shots", "2", "--json"])
    assert two_shot.exit_code == 0
    assert json.loads(two_shot.stdout.strip().splitlines()[-1])["categories"][0]["n_references"] == 2


def test_eval_command_fails_with_one_typed_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--data", str(tmp_path / "missing"), "--json"])
    assert result.exit_code == 2
    assert "InvalidRequestError:" in result.output
    assert "Traceback" not in result.output
    bad = CliRunner().invoke(app, ["--data", str(tmp_path), "--category", "nope"])
    assert bad.exit_code == 2 and "nope" in bad.output
    pose = CliRunner().invoke(app, ["--data", str(tmp_path), "--pose", "sideways"])
    assert pose.exit_code == 2 and "InvalidRequestError: --pose must be 'free' or 'fixed'" in pose.output


def test_confidently_wrong_counts_only_answers_far_on_the_wrong_side() -> None:
    labels = [False, False, True, True]
    assert confidently_wrong(labels, [0.1, 0.79, 0.21, 0.9]) == 0.0  # near misses are not confident
    assert confidently_wrong(labels, [0.85, 0.1, 0.05, 0.9]) == 0.5  # a sure alarm and a sure pass
    assert confidently_wrong([], []) == 0.0
