"""What every tool surface shares: a confined inspector and the report rendered for a model."""

from __future__ import annotations

import base64
from pathlib import Path

from riad_agent.inspector import Inspector
from riad_agent.schemas import InspectionReport
from riad_agent.settings import Settings, load_settings

TOOL_NAME = "inspect_industrial_image"
TOOL_DESCRIPTION = (
    "Inspect a product image for manufacturing defects. Returns a verdict (normal / anomalous / "
    "uncertain), a calibrated anomaly score (0.5 = edge of normal), defect regions as pixel boxes, "
    "the defect type when it can tell, a heatmap, the knowledge it used and an explanation. Give the "
    "image as a file path, base64 or a data URI; add normal reference images of the same product for "
    "localisation, the product category if known, and optionally a multiple-choice question."
)


def tool_settings(settings: Settings | None = None) -> Settings:
    """Settings for agent-facing tools: image paths are confined to allowed roots (cwd by default)."""
    settings = settings or load_settings()
    if settings.allowed_roots is None:
        settings = settings.model_copy(update={"allowed_roots": [Path.cwd()]})
    return settings


def tool_inspector(settings: Settings | None = None, inspector: Inspector | None = None) -> Inspector:
    """The inspector a tool runs: the given one, or one built from confined settings."""
    return inspector or Inspector(tool_settings(settings))


def report_text(report: InspectionReport) -> str:
    """The short text a chat model reads: the one-line summary and the explanation."""
    lines = [report.summary(), report.explanation]
    if report.knowledge:
        lines.append("Knowledge used: " + ", ".join(hit.id for hit in report.knowledge))
    return "\n".join(lines)


def heatmap_base64(report: InspectionReport) -> str | None:
    """The heatmap overlay as base64 PNG, if the report has one."""
    return base64.b64encode(report.heatmap_png).decode("ascii") if report.heatmap_png else None
