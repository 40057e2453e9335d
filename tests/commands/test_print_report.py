"""The CLI's human-readable report prints the report's texts verbatim."""

from __future__ import annotations

import pytest

from riad_agent.commands.inspection import print_report
from riad_agent.schemas import InspectionReport


def test_bracketed_ids_in_the_report_are_not_taken_for_console_markup(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = InspectionReport(
        verdict="anomalous",
        anomaly_score=0.9,
        category="synthetic/washer",
        defect_type="hole",
        explanation="Defect type: Synthetic washer: Hole [synthetic/washer/hole], chosen by the reasoner. [bold]x[/bold]",
        image_size=(64, 64),
    )
    print_report(report)
    printed = " ".join(capsys.readouterr().out.split())
    assert "Hole [synthetic/washer/hole], chosen by the reasoner." in printed
    assert "[bold]x[/bold]" in printed
