"""`riad eval expert` on a tiny generated MVTec-layout folder, through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from riad_agent.commands.eval_expert import eval_expert
from riad_agent.data.synthetic import write_mvtec_layout
from riad_agent.eval.expert_eval import CategoryResult, confidently_wrong, pool_draws

app = typer.Typer()
app.command()(eval_expert)


def _washers(folder: Path, n_train: int, n_test_good: int, seed: int, defects: list[str]) -> None:
    write_mvtec_layout(
        folder,
        ["synthetic/washer"],
        n_train=n_train,
        n_test_good=n_test_good,
        n_test_per_defect=1,
        seed=seed,
        size=128,
        defects=defects,
    )


def test_eval_command_reports_metrics_per_category_and_mean(tmp_path: Path) -> None:
    _washers(tmp_path, 4, 3, 1, ["hole", "stain", "colour"])
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


def _result(category: str, auroc: float, balanced: float, pose: str) -> CategoryResult:
    return CategoryResult(
        category=category,
        n_references=4,
        n_test_good=2,
        n_test_anomalous=8,
        image_auroc=auroc,
        verdict_balanced_accuracy=balanced,
        pose=pose,
        ms_per_image=10.0,
        fit_seconds=1.0,
    )


def test_reference_draws_pool_into_means_and_ranges() -> None:
    first = [_result("nut", 1.0, 0.75, "free (references)"), _result("pcb", 0.9, 0.5, "fixed (references)")]
    second = [_result("nut", 0.8, 0.95, "fixed (references)"), _result("pcb", 0.7, 1.0, "fixed (references)")]
    nut, pcb = pool_draws([first, second])
    assert nut.draws == 2 and abs(nut.image_auroc - 0.9) < 1e-9 and nut.image_auroc_range == (0.8, 1.0)
    assert (
        nut.verdict_balanced_accuracy_range == (0.75, 0.95)
        and nut.pose == "free (references) / fixed (references)"
    )
    assert pcb.pose == "fixed (references)" and pcb.n_references == 4 and pcb.pixel_auroc is None
    assert pool_draws([first]) == first  # one draw: as it was, no ranges


def test_draws_average_several_reference_choices(tmp_path: Path) -> None:
    _washers(tmp_path, 6, 2, 3, ["hole", "stain"])
    args = ["--data", str(tmp_path), "--size", "128", "--shots", "2", "--json"]
    result = CliRunner().invoke(app, [*args, "--draws", "3"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    (washer,) = report["categories"]
    assert report["draws"] == 3 and washer["draws"] == 3
    low, high = washer["verdict_balanced_accuracy_range"]
    assert low <= washer["verdict_balanced_accuracy"] <= high
    # the first draw alone is the default run (seed 0)
    alone = json.loads(CliRunner().invoke(app, args).stdout.strip().splitlines()[-1])["categories"][0]
    assert alone["draws"] == 1 and alone["image_auroc_range"] is None
    assert CliRunner().invoke(app, [*args, "--draws", "0"]).exit_code == 2
