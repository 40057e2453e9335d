"""What every tool surface shares: a confined inspector, the report rendered for a model, sync calls."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import io
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image
from pydantic import ValidationError

from riad_agent.components import Components
from riad_agent.errors import InvalidRequestError, first_problem
from riad_agent.imaging import encode_png
from riad_agent.inspector import Inspector
from riad_agent.schemas import InspectionReport
from riad_agent.settings import Settings, load_settings

T = TypeVar("T")

TOOL_NAME = "inspect_industrial_image"
TOOL_DESCRIPTION = (
    "Inspect a product image for manufacturing defects. Returns a verdict (normal / anomalous / "
    "uncertain), a calibrated anomaly score (0.5 = edge of normal), defect regions as pixel boxes, "
    "the defect type when it can tell, a heatmap, the knowledge it used and an explanation. Give the "
    "image as a file path, base64 or a data URI; add normal reference images of the same product for "
    "localisation, the product category if known, and optionally a multiple-choice question."
)


def report_json(report: InspectionReport) -> str:
    """The report as the JSON a model reads: without the heatmap (sent as an image) and without the
    latent loop's per-iteration record (patches tried and kept at every step: about 70 % of a reasoned
    report's characters, nothing a chat model acts on; the trace's summary stays)."""
    return report.model_dump_json(exclude={"heatmap_png": True, "trace": {"iterations": True}})


#: The heatmap a tool puts into a model's context is shrunk to at most this many bytes of PNG.
SMALL_HEATMAP_BYTES = 64 * 1024


class OnComponents:
    """Tool operations on one inspector's components: the same registry, image policy and expert as
    the inspection tool. Given as a callable, they are resolved on first use (a server builds its
    inspector lazily)."""

    def __init__(self, components: Components | Callable[[], Components]) -> None:
        self._components = components

    @property
    def components(self) -> Components:
        """The components, resolved on first use."""
        if callable(self._components):
            self._components = self._components()
        return self._components


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
    """The short text a chat model reads: the summary, every degraded part and the explanation."""
    lines = [report.summary(), *report.degradation_notes(), report.explanation]
    if report.knowledge:
        lines.append("Knowledge used: " + ", ".join(hit.id for hit in report.knowledge))
    return "\n".join(lines)


def validation_error_text(error: ValidationError) -> str:
    """A schema refusal of the tool's arguments as the one-line typed error the model reads."""
    where, problem = first_problem(error, "arguments")
    return InvalidRequestError(f"invalid request field {where}: {problem}").one_line()


def small_heatmap(png: bytes, max_bytes: int = SMALL_HEATMAP_BYTES) -> bytes | None:
    """The heatmap PNG shrunk until it fits ``max_bytes``; None when it cannot be read or shrunk."""
    if len(png) <= max_bytes:
        return png
    try:
        with Image.open(io.BytesIO(png)) as opened:
            image = opened.convert("RGB")
    except Exception:  # noqa: BLE001 - an unreadable heatmap is left out, never an error of the tool
        return None
    side = max(image.size)
    while side > 16:
        side = min(side // 2, 512)
        thumbnail = image.copy()
        thumbnail.thumbnail((side, side), Image.Resampling.BILINEAR)
        data = encode_png(thumbnail, compress_level=9)
        if len(data) <= max_bytes:
            return data
    return None


def heatmap_base64(report: InspectionReport, full_size: bool = False) -> str | None:
    """The heatmap overlay as base64 PNG (shrunk to :data:`SMALL_HEATMAP_BYTES` unless ``full_size``)."""
    if not report.heatmap_png:
        return None
    data = report.heatmap_png if full_size else small_heatmap(report.heatmap_png)
    return base64.b64encode(data).decode("ascii") if data else None


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from synchronous code, on a fresh event loop that is shut down cleanly.

    Inside a thread that already runs an event loop (a notebook, an async agent calling a sync tool)
    it runs on a worker thread instead, so it never nests loops.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
