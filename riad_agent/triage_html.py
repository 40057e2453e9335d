"""A self-contained HTML page of a triage run: thumbnails, heatmaps, verdicts, scores, explanations."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from PIL import Image

from riad_agent.errors import OutputWriteError, RiadError
from riad_agent.graphs.triage_results import read_records
from riad_agent.imaging import ImagePolicy, load_image

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;background:#f6f7f9;color:#1d2330}
h1{font-size:20px;margin:0 0 4px} .meta{color:#5b6475;margin-bottom:16px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{padding:8px;border-bottom:1px solid #e3e6ec;vertical-align:top;text-align:left;font-size:13px}
th{background:#eef0f4} img{width:128px;height:128px;object-fit:contain;background:#222;border-radius:4px}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-weight:600;color:#fff}
.anomalous{background:#c0392b}.normal{background:#27ae60}.uncertain{background:#d68910}.error{background:#7f8c8d}
.expl{max-width:520px;color:#39414f}
"""


def _thumbnail(path: str | None, size: int = 160) -> str:
    if not path:
        return ""
    try:
        image = load_image(path, ImagePolicy()).image
    except RiadError:
        return ""
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return f'<img alt="" src="data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def render_triage_html(jsonl: Path, title: str = "riad-agent triage") -> str:
    """The HTML page for the results in ``jsonl``, each image once by its last line (anomalous first, then
    by score); :class:`~riad_agent.errors.ResultsFileError` when the file holds anything else."""
    records = read_records(jsonl)

    def order(record: dict[str, object]) -> tuple[int, float]:
        report = record.get("report")
        if not isinstance(report, dict):
            return (3, 0.0)
        rank = {"anomalous": 0, "uncertain": 1, "normal": 2}.get(str(report["verdict"]), 3)
        return (rank, -float(report["anomaly_score"]))

    rows = []
    counts: dict[str, int] = {}
    for record in sorted(records, key=order):
        report = record.get("report")
        name = html.escape(Path(str(record["image"])).name)
        if isinstance(report, dict):
            verdict = str(report["verdict"])
            detail = (
                f'<span class="badge {verdict}">{verdict}</span><br>score {report["anomaly_score"]:.2f}'
                + (
                    f"<br>defect: {html.escape(str(report['defect_type']))}"
                    if report.get("defect_type")
                    else ""
                )
                + (f"<br>category: {html.escape(str(report['category']))}" if report.get("category") else "")
            )
            explanation = html.escape(str(report.get("explanation", "")))
        else:
            verdict = "error"
            error = record.get("error") or {}
            detail = '<span class="badge error">error</span>'
            explanation = html.escape(f"{error.get('type', '')}: {error.get('message', '')}")
        counts[verdict] = counts.get(verdict, 0) + 1
        rows.append(
            f"<tr><td>{name}</td><td>{_thumbnail(str(record['image']))}</td>"
            f"<td>{_thumbnail(record.get('heatmap'))}</td><td>{detail}</td>"
            f'<td class="expl">{explanation}</td></tr>'
        )
    summary = ", ".join(f"{count} {verdict}" for verdict, count in sorted(counts.items()))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<div class='meta'>{len(records)} images: {summary}</div><table>"
        "<tr><th>image</th><th>part</th><th>heatmap</th><th>verdict</th><th>explanation</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )


def write_triage_html(jsonl: Path, out: Path) -> None:
    """Write the triage page for ``jsonl`` to ``out``."""
    page = render_triage_html(jsonl)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise OutputWriteError(f"cannot write {out}: {exc.strerror or exc}") from exc
