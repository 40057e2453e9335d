"""What the triage page shows of each results line: one :class:`TriageRow`, from new lines and old ones.

New lines carry ``path``, ``product``, ``verdict``, ``score``, ``regions`` and ``defect_type`` at the
top; lines of older versions carry only ``image``/``report``/``heatmap``/``error``/``elapsed_ms``, so
those fields are taken from the report. A line whose fields cannot be read becomes an ``error`` row
naming the problem, so one odd line never stops the page.
"""

from __future__ import annotations

import math
import posixpath
from pathlib import PurePath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from riad_agent.errors import first_problem

Outcome = Literal["uncertain", "anomalous", "error", "normal"]
#: Order of the table and of "needs a human first": most urgent first.
OUTCOME_RANK: dict[str, int] = {"uncertain": 0, "anomalous": 1, "error": 2, "normal": 3}
Box = tuple[float, float, float, float]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _NewRegion(_Lenient):
    box: tuple[float, float, float, float]
    score: float | None = None


class _OldRegion(_Lenient):
    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 0.0


class _Report(_Lenient):
    verdict: Literal["normal", "anomalous", "uncertain"]
    anomaly_score: float
    category: str | None = None
    category_guessed: bool = False
    defect_type: str | None = None
    regions: list[_OldRegion] = Field(default_factory=list)
    image_size: tuple[int, int] | None = None
    explanation: str = ""
    references: int | None = None
    pose: str | None = None


class _Line(_Lenient):
    image: str
    path: str | None = None
    product: str | None = None
    product_guessed: bool | None = None
    verdict: Literal["normal", "anomalous", "uncertain"] | None = None
    reason: str | None = None
    score: float | None = None
    threshold: float | None = None
    regions: list[_NewRegion] | None = None
    defect_type: str | None = None
    type_confidence: float | None = None
    size: tuple[int, int] | None = None
    references: int | None = None
    pose: str | None = None
    reasoner: bool | None = None
    heatmap: str | None = None
    error: dict[str, str] | None = None
    elapsed_ms: float | None = None
    report: _Report | None = None


class TriageRow(BaseModel):
    """One image as the page shows it."""

    model_config = ConfigDict(frozen=True)

    image: str
    path: str  # relative to the triaged root, POSIX
    outcome: Outcome
    product: str | None = None
    product_guessed: bool = False
    score: float | None = None
    threshold: float = 0.5
    box: Box | None = None  # the strongest region, original-image pixels
    size: tuple[int, int] | None = None
    defect_type: str | None = None
    type_confidence: float | None = None
    reason: str | None = None  # why uncertain
    explanation: str | None = None
    error: str | None = None  # "Type: message"
    heatmap: str | None = None
    reasoner: bool | None = None
    references: int | None = None  # normal references the image was compared with (None: older lines)
    pose: str | None = None

    @property
    def note(self) -> str:
        """The sentence an operator reads beside the verdict: the error, why uncertain, or the report's words."""
        return self.error or self.reason or self.explanation or ""


def _strongest(line: _Line) -> Box | None:
    if line.regions:
        return max(line.regions, key=lambda region: region.score or 0.0).box
    if line.report is not None and line.report.regions:
        top = max(line.report.regions, key=lambda region: region.score)
        return (top.x0, top.y0, top.x1, top.y1)
    return None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _row(line: _Line, path: str) -> TriageRow:
    report = line.report
    error = f"{line.error.get('type', 'Error')}: {line.error.get('message', '')}" if line.error else None
    verdict = line.verdict or (report.verdict if report is not None else None)
    if error is None and verdict is None:
        error = "RecordError: the line has neither a verdict nor an error"
    score = line.score if line.score is not None else (report.anomaly_score if report else None)
    return TriageRow(
        image=line.image,
        path=path,
        outcome="error" if error or verdict is None else verdict,
        product=line.product or (report.category if report else None),
        product_guessed=bool(
            line.product_guessed if line.product_guessed is not None else report and report.category_guessed
        ),
        score=_finite(score),
        threshold=_finite(line.threshold) or 0.5,
        box=_strongest(line),
        size=line.size or (report.image_size if report else None),
        defect_type=line.defect_type or (report.defect_type if report else None),
        type_confidence=_finite(line.type_confidence),
        reason=line.reason,
        explanation=(report.explanation or None) if report else None,
        error=error,
        heatmap=line.heatmap,
        reasoner=line.reasoner,
        references=line.references
        if line.references is not None
        else (report.references if report else None),
        pose=line.pose or (report.pose if report else None),
    )


def _common_root(images: list[str]) -> str:
    """The deepest folder holding every image (for lines without a relative path)."""
    parents = [posixpath.dirname(PurePath(image).as_posix()) for image in images]
    if not parents:
        return ""
    try:
        return posixpath.commonpath(parents)
    except ValueError:  # absolute and relative paths mixed
        return ""


def _relative(image: str, root: str) -> str:
    posix = PurePath(image).as_posix()
    return posixpath.relpath(posix, root) if root else posix


def rows_from_records(records: list[dict[str, Any]]) -> list[TriageRow]:
    """One row per record, in the records' order; lines without ``path`` get one relative to the
    deepest folder common to them."""
    lines: list[_Line | str] = []
    for record in records:
        try:
            lines.append(_Line.model_validate(record))
        except ValidationError as exc:
            where, problem = first_problem(exc, "record")
            lines.append(f"RecordError: field {where}: {problem}")
    root = _common_root([line.image for line in lines if isinstance(line, _Line) and not line.path])
    rows = []
    for record, line in zip(records, lines, strict=True):
        if isinstance(line, str):
            image, path = str(record.get("image", "?")), record.get("path")
            path = path if isinstance(path, str) and path else _relative(image, root)
            rows.append(TriageRow(image=image, path=path, outcome="error", error=line))
        else:
            rows.append(_row(line, line.path or _relative(line.image, root)))
    return rows


def triaged_root(rows: list[TriageRow]) -> str | None:
    """The folder that was triaged, when every row says the same (``image`` ends with ``path``)."""
    roots = set()
    for row in rows:
        image = PurePath(row.image).as_posix()
        if not image.endswith("/" + row.path):
            return None
        roots.add(image[: -len(row.path) - 1])
    return roots.pop() if len(roots) == 1 else None


def table_order(row: TriageRow) -> tuple[int, float, str]:
    """Uncertain, anomalous, errors, normal; the highest score first within each, then by path."""
    return (OUTCOME_RANK[row.outcome], -(row.score if row.score is not None else -1.0), row.path)


def needs_human(rows: list[TriageRow]) -> list[TriageRow]:
    """The images a person should look at first: uncertain ones, then anomalous ones, by score."""
    return sorted((row for row in rows if row.outcome in ("uncertain", "anomalous")), key=table_order)
