"""MMAD scoring: answer parsing and the table, against hand-computed values."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from riad_agent.eval.mmad_scoring import ScoredAnswer, parse_answer, score_answers, write_scores_csv

OPTIONS = {"A": "Crack", "B": "Scratch", "C": "Hole", "D": "Stain"}


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("B", "B"),
        ("The answer is B.", "B"),
        ("Answer: (D)", "D"),
        ("A. Yes, option C is wrong", "C"),  # MMAD keeps the last standalone letter
        ("scratchy surface", "B"),  # no standalone letter: the closest option text
        ("AB hole", "C"),
    ],
)
def test_parse_answer_follows_mmad(response: str, expected: str) -> None:
    assert parse_answer(response, OPTIONS) == expected


def test_parse_answer_without_options_returns_response() -> None:
    assert parse_answer("no idea", None) == "no idea"
    assert parse_answer("F is not an option letter", OPTIONS) != "F"


def _a(image: str, kind: str, correct: str, given: str) -> ScoredAnswer:
    return ScoredAnswer(image=image, question_type=kind, correct_answer=correct, gpt_answer=given)


def _answers() -> list[ScoredAnswer]:
    x_good = "MVTec-AD/washer/test/good/000.png"
    x_bad = "MVTec-AD/washer/test/scratch/000.png"
    y_good = "VisA/fabric/test/good/000.png"
    y_bad = "VisA/fabric/test/hole/000.png"
    return [
        # dataset X: detection 3/3 normal right, 1/1 anomalous wrong -> plain 75, balanced 50
        _a(x_good, "Anomaly Detection", "B", "B"),
        _a("MVTec-AD/washer/test/good/001.png", "Anomaly Detection", "B", "B"),
        _a("MVTec-AD/washer/test/good/002.png", "Anomaly Detection", "B", "B"),
        _a(x_bad, "Anomaly Detection", "A", "B"),
        # dataset X: classification 1/2 -> 50
        _a(x_bad, "Defect Classification", "C", "C"),
        _a(x_bad, "Defect Classification", "C", "A"),
        # dataset Y: detection 1/1 + 1/1 -> 100
        _a(y_good, "Anomaly Detection", "B", "B"),
        _a(y_bad, "Anomaly Detection", "A", "A"),
        # dataset Y: classification 1/4 -> 25, plus one unparsable answer (dropped)
        _a(y_bad, "Defect Classification", "A", "A"),
        _a(y_bad, "Defect Classification", "A", "B"),
        _a(y_bad, "Defect Classification", "A", "C"),
        _a(y_bad, "Defect Classification", "A", "D"),
        _a(y_bad, "Defect Classification", "A", "I am not sure"),
        # dataset Y: 'Object Details' counts as Object Analysis -> 100
        _a(y_good, "Object Details", "A", "A"),
    ]


def test_scores_match_hand_computed_values() -> None:
    scores = score_answers(_answers())
    assert scores.counted == 13 and scores.dropped == 1
    x, y, avg = scores.rows["MVTec-AD"], scores.rows["VisA"], scores.rows["Average"]
    assert list(scores.rows) == ["MVTec-AD", "VisA", "Average"]
    assert x["Anomaly Detection"] == pytest.approx(50.0)  # plain accuracy would be 75
    assert x["Defect Classification"] == pytest.approx(50.0)
    assert x["Object Analysis"] is None
    assert x["Average"] == pytest.approx(50.0)
    assert (x["Recall"], x["Precision"], x["F1"]) == (0.0, 0.0, 0.0)
    assert y["Anomaly Detection"] == pytest.approx(100.0)
    assert y["Defect Classification"] == pytest.approx(25.0)
    assert y["Object Analysis"] == pytest.approx(100.0)
    assert y["Average"] == pytest.approx(75.0)
    assert (y["Recall"], y["Precision"], y["F1"]) == pytest.approx((100.0, 100.0, 100.0))
    assert avg["Anomaly Detection"] == pytest.approx(75.0)
    assert avg["Defect Classification"] == pytest.approx(37.5)
    assert avg["Object Analysis"] == pytest.approx(100.0)
    # headline: mean over datasets of the per-dataset mean over subtasks
    assert scores.average == pytest.approx(62.5)
    micro = 8 / 13 * 100  # 8 right of 13 counted
    assert abs(scores.average - micro) > 0.5  # type: ignore[operator]
    assert avg["F1"] == pytest.approx(50.0)


def test_csv_has_mmad_columns(tmp_path: Path) -> None:
    path = write_scores_csv(score_answers(_answers()), tmp_path / "answers_accuracy.csv")
    with path.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == [
        "",
        "Anomaly Detection",
        "Defect Classification",
        "Defect Localization",
        "Defect Description",
        "Defect Analysis",
        "Object Classification",
        "Object Analysis",
        "Average",
        "Recall",
        "Precision",
        "F1",
    ]
    assert [row[0] for row in rows[1:]] == ["MVTec-AD", "VisA", "Average"]
    assert float(rows[3][8]) == pytest.approx(62.5)
    assert rows[1][7] == ""  # no Object Analysis question in MVTec-AD


def test_balanced_detection_of_a_one_class_sample_is_that_class() -> None:
    answers = [
        ScoredAnswer(
            image=f"MVTec-AD/x/test/crack/00{i}.png",
            question_type="Anomaly Detection",
            correct_answer="A",
            gpt_answer="A",
        )
        for i in range(3)
    ]
    assert score_answers(answers).rows["MVTec-AD"]["Anomaly Detection"] == 100.0  # not (0 + 100) / 2
