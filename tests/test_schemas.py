"""Contracts: what requests accept and refuse, and how reports serialise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from riad_agent.schemas import (
    InspectionReport,
    InspectionRequest,
    MultipleChoiceQuestion,
    Region,
)


def test_request_accepts_path_bytes_and_strings() -> None:
    assert InspectionRequest(image=Path("/tmp/a.png")).image == "/tmp/a.png"
    assert InspectionRequest(image=b"\x89PNG...").image == b"\x89PNG..."
    request = InspectionRequest(image="a.png", references=[Path("b.png"), b"raw"], category=" Hazelnut ")
    assert request.references == ["b.png", b"raw"]
    assert request.category == "hazelnut"


@pytest.mark.parametrize("category", ["Hazel nut", "../etc", "mvtec/hazel/nut", "a;b"])
def test_request_rejects_bad_categories(category: str) -> None:
    with pytest.raises(ValidationError, match="category"):
        InspectionRequest(image="a.png", category=category)


def test_request_rejects_unknown_fields_and_empty_image() -> None:
    with pytest.raises(ValidationError, match="extra"):
        InspectionRequest.model_validate({"image": "a.png", "colour": "red"})
    with pytest.raises(ValidationError, match="empty"):
        InspectionRequest(image="")


def test_question_options_are_ordered_letters() -> None:
    question = MultipleChoiceQuestion(text="Defect?", options={"B": "No.", "A": "Yes."})
    assert list(question.options) == ["A", "B"]
    assert question.render() == "Defect?\nA. Yes.\nB. No."
    for options in ({"A": "x"}, {"A": "x", "C": "y"}, {"a": "x", "b": "y"}, {"A": "x", "B": " "}):
        with pytest.raises(ValidationError):
            MultipleChoiceQuestion(text="q", options=options)


def test_options_bounds() -> None:
    with pytest.raises(ValidationError):
        InspectionRequest.model_validate({"image": "a.png", "options": {"latent_steps": -1}})
    with pytest.raises(ValidationError):
        InspectionRequest.model_validate({"image": "a.png", "options": {"latent_tokens": 0}})


def test_region_must_be_ordered() -> None:
    with pytest.raises(ValidationError):
        Region(x0=5, y0=0, x1=5, y1=3, score=0.5, area=1)


def test_report_round_trips_json_with_base64_heatmap() -> None:
    report = InspectionReport(
        verdict="anomalous",
        anomaly_score=0.9,
        regions=[Region(x0=1, y0=2, x1=10, y1=12, score=0.8, area=40)],
        heatmap_png=b"\x89PNG\r\n\x1a\nbytes",
        image_size=(64, 48),
        degraded=["reasoner_unavailable"],
    )
    text = report.model_dump_json()
    assert json.loads(text)["heatmap_png"] == "iVBORw0KGgpieXRlcw=="
    again = InspectionReport.model_validate_json(text)
    assert again == report
    assert "anomalous (anomaly score 0.90)" in report.summary()
    assert "x=1-10" in report.summary()


def test_the_summary_states_a_type_as_a_finding_only_on_an_anomalous_verdict() -> None:
    anomalous = InspectionReport(
        verdict="anomalous", anomaly_score=0.9, defect_type="crack", image_size=(8, 8)
    )
    assert "defect: crack" in anomalous.summary()
    uncertain = anomalous.model_copy(update={"verdict": "uncertain", "anomaly_score": 0.48})
    assert "defect: crack" not in uncertain.summary()
    assert "if defective, it looks like: crack" in uncertain.summary()


def test_report_score_and_answer_bounds() -> None:
    with pytest.raises(ValidationError):
        InspectionReport(verdict="normal", anomaly_score=1.2, image_size=(1, 1))
    with pytest.raises(ValidationError):
        InspectionReport(verdict="normal", anomaly_score=0.2, answer="AB", image_size=(1, 1))
    with pytest.raises(ValidationError):
        InspectionReport(verdict="broken", anomaly_score=0.2, image_size=(1, 1))  # type: ignore[arg-type]
