"""``riad inspect``: repeated option letters are refused, and every degraded part is shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from riad_agent.cli import app
from riad_agent.schemas import InspectionReport


class DegradedInspector:
    """Stands in for the Inspector: returns a report whose knowledge and reasoner were skipped."""

    requests: ClassVar[list[Any]] = []

    def inspect(self, request: Any, progress: Any = None) -> InspectionReport:
        self.requests.append(request)
        return InspectionReport(
            verdict="normal",
            anomaly_score=0.2,
            explanation="Verdict: normal.",
            degraded=["knowledge_unavailable", "reasoner_timeout"],
            image_size=(64, 64),
        )


@pytest.fixture
def degraded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> type[DegradedInspector]:
    monkeypatch.setattr("riad_agent.inspector.Inspector", DegradedInspector)
    monkeypatch.setenv("RIAD_DATA_DIR", str(tmp_path / "data"))
    DegradedInspector.requests = []
    return DegradedInspector


@pytest.mark.parametrize("second", ["A=No.", "a=No.", " A =No."])
def test_a_repeated_option_letter_is_refused(degraded: type[DegradedInspector], second: str) -> None:
    result = CliRunner().invoke(
        app, ["inspect", "part.png", "--question", "Defect?", "--option", "A=Yes.", "--option", second]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("InvalidRequestError: --option A is given twice"), lines
    assert degraded.requests == []  # nothing was inspected with one option silently dropped


def test_every_degraded_part_is_shown_and_warned(degraded: type[DegradedInspector]) -> None:
    result = CliRunner().invoke(app, ["inspect", "part.png"])
    assert result.exit_code == 0, result.output
    assert "knowledge_unavailable: the knowledge base could not be reached" in result.stdout
    assert "reasoner_timeout: the reasoner did not answer in time" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: degraded: ")]
    assert [w.split(":")[2].strip() for w in warnings] == ["knowledge_unavailable", "reasoner_timeout"]


def test_json_output_warns_on_stderr_too(degraded: type[DegradedInspector]) -> None:
    result = CliRunner().invoke(app, ["inspect", "part.png", "--json"])
    assert result.exit_code == 0, result.output
    assert '"knowledge_unavailable"' in result.stdout
    assert "warning: degraded: knowledge_unavailable" in result.stderr
