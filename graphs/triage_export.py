"""The triage results as a table: one flat row per image (its last line), written as CSV or Parquet.

The JSONL stays the run's memory (resume, the HTML page); a table is derived from it after a run.
Lines of older versions (a ``report`` without the top-level fields) give the same columns.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Literal

from riad_agent.errors import ConfigurationError, OutputWriteError
from riad_agent.graphs.triage_results import read_records

TableFormat = Literal["csv", "parquet"]

COLUMNS = (
    "path",
    "image",
    "product",
    "product_guessed",
    "verdict",
    "reason",
    "score",
    "threshold",
    "defect_type",
    "type_confidence",
    "width",
    "height",
    "references",
    "pose",
    "regions",
    "top_box",
    "reasoner",
    "heatmap",
    "error_type",
    "error_message",
    "elapsed_ms",
)


def flat_row(record: dict[str, Any]) -> dict[str, Any]:
    """One record as flat columns (regions as JSON text, the strongest region's box as ``x0,y0,x1,y1``)."""
    report = record.get("report") or {}
    error = record.get("error") or {}
    regions = record.get("regions")
    if regions is None:  # an older line: the report's regions
        regions = [
            {"box": [r["x0"], r["y0"], r["x1"], r["y1"]], "score": r["score"]}
            for r in sorted(report.get("regions", []), key=lambda r: -r["score"])
        ]
    size = record.get("size") or report.get("image_size") or [None, None]
    verdict = None if error else record.get("verdict") or report.get("verdict")
    return {
        "path": record.get("path") or record["image"],
        "image": record["image"],
        "product": record.get("product", report.get("category")),
        "product_guessed": bool(record.get("product_guessed", report.get("category_guessed", False))),
        "verdict": verdict,
        "reason": record.get("reason"),
        "score": record.get("score", report.get("anomaly_score")),
        "threshold": record.get("threshold", 0.5),
        "defect_type": record.get("defect_type", report.get("defect_type")),
        "type_confidence": record.get("type_confidence"),
        "width": size[0],
        "height": size[1],
        "references": record.get("references", report.get("references")),
        "pose": record.get("pose", report.get("pose")),
        "regions": json.dumps(regions),
        "top_box": ",".join(str(v) for v in regions[0]["box"]) if regions else None,
        "reasoner": bool(record.get("reasoner", report.get("trace") is not None)),
        "heatmap": record.get("heatmap"),
        "error_type": error.get("type"),
        "error_message": error.get("message"),
        "elapsed_ms": record.get("elapsed_ms"),
    }


def table_path(jsonl: Path, fmt: TableFormat) -> Path:
    """Where the table of ``results.jsonl`` goes: ``results.csv`` / ``results.parquet`` beside it."""
    return (
        jsonl.with_suffix(f".{fmt}") if jsonl.suffix == ".jsonl" else jsonl.with_name(f"{jsonl.name}.{fmt}")
    )


def export_table(jsonl: Path, fmt: TableFormat, dest: Path | None = None) -> Path:
    """Write the last record of each image of ``jsonl`` as a table; its path."""
    rows = [flat_row(record) for record in read_records(jsonl)]
    dest = dest or table_path(jsonl, fmt)
    try:
        if fmt == "csv":
            with dest.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
        else:
            _write_parquet(rows, dest)
    except OSError as exc:
        raise OutputWriteError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    return dest


def _write_parquet(rows: list[dict[str, Any]], dest: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigurationError(
            "--format parquet needs pyarrow: pip install 'riad-agent[parquet]' (or use --format csv)"
        ) from None
    columns = {name: [row[name] for row in rows] for name in COLUMNS}
    pq.write_table(pa.table(columns), dest)
