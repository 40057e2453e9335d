"""Batch triage: many images through the inspection graph, results streamed to JSONL as they finish.

    list_images -> inspect_all -> summarise -> END

``inspect_all`` holds the results file's lock (``graphs/triage_results.py``) from reading it to its
last line: a second run on the same file fails with ``ResultsLockedError``. It skips every image
that already has a line, then runs the inspection graph as a subgraph on each pending image with
bounded concurrency and appends one JSON line per image the moment it finishes (flushed and
fsynced), so a crash loses at most the images in flight and a re-run redoes nothing and duplicates
nothing. A torn last line from a crash is cut off before appending; any other unexpected content is a
``ResultsFileError`` and the file is left as it was. A bad image becomes an ``error`` line instead
of stopping the batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic builds JSON schemas of typing_extensions' TypedDict only

from riad_agent.components import Components, build_components
from riad_agent.errors import InvalidRequestError, OutputWriteError, RiadError
from riad_agent.graphs.context import bind, configured
from riad_agent.graphs.inspection import build_inspection_graph, run_inspection
from riad_agent.graphs.triage_results import (
    JsonlWriter,
    Outcome,
    ResultsLock,
    TriageRecord,
    read_outcomes,
)
from riad_agent.graphs.triage_results import read_finished as read_finished  # for callers of before
from riad_agent.schemas import InspectionOptions, InspectionRequest, validated
from riad_agent.settings import Settings

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
INSPECTION_KEY = "riad_inspection_graph"  # the compiled inspection graph, bound into the config
PROGRESS_KEY = "riad_triage_progress"  # the progress callback, bound into the config


class TriageJob(BaseModel):
    """A batch: the images (a folder or a list), what they share, and where results go."""

    model_config = ConfigDict(extra="forbid")

    images: list[Path] | Path = Field(description="A folder (searched recursively) or a list of image files.")
    out: Path = Field(description="JSONL file; one line per image, appended as each finishes.")
    category: str | None = None
    references: list[Path] = Field(default_factory=list)
    options: InspectionOptions = Field(default_factory=InspectionOptions)
    concurrency: int = Field(default=2, ge=1, le=64)
    heatmaps: bool = Field(default=True, description="Save each heatmap PNG beside the JSONL.")
    retry_errors: bool = Field(default=False, description="Redo images whose earlier line is an error.")


class TriageSummary(BaseModel):
    """Counts of a triage run; each image of the job once, by its last line in the output."""

    total: int
    skipped: int
    inspected: int
    anomalous: int
    normal: int
    uncertain: int
    errors: int
    out: str


class TriageInput(BaseModel):
    """What a caller sends: ``{"job": {...}}`` (JSON is validated into a TriageJob)."""

    model_config = ConfigDict(extra="forbid")

    job: TriageJob


class TriageOutput(TypedDict):
    """What a caller gets back: the summary."""

    summary: TriageSummary


class TriageState(TypedDict, total=False):
    job: TriageJob
    images: list[str]
    pending: list[str]
    finished: int
    outcomes: dict[str, Outcome]
    summary: TriageSummary


def list_images(source: list[Path] | Path) -> list[str]:
    """Image files of a folder (recursive, sorted) or of a list, as resolved path strings."""
    if isinstance(source, Path):
        if not source.is_dir():
            raise InvalidRequestError(f"{source} is not a folder of images")
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InvalidRequestError(f"{source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    else:
        files = list(source)
    return list(dict.fromkeys(str(p.resolve()) for p in files))


def _save_heatmap(out: Path, image: str, png: bytes) -> str:
    """Write an image's heatmap beside the JSONL; its path."""
    path = _heatmap_path(out, image)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return str(path)


def _heatmap_path(out: Path, image: str) -> Path:
    folder = out.with_name(out.stem + ".heatmaps")
    digest = hashlib.sha1(image.encode("utf-8")).hexdigest()[:10]
    return folder / f"{Path(image).stem}-{digest}.png"


def parse_job(value: TriageJob | dict[str, Any]) -> TriageJob:
    """Validate a job given as a dict (JSON); typed error naming the first bad field."""
    return validated(TriageJob, value, "job")


async def list_node(state: TriageState) -> dict[str, Any]:
    """Every image of the job (a job given as JSON becomes a TriageJob here)."""
    given = state["job"]
    job = parse_job(given)
    update: dict[str, Any] = {"images": await asyncio.to_thread(list_images, job.images)}
    if job is not given:
        update["job"] = job
    return update


async def inspect_all(state: TriageState, config: RunnableConfig) -> dict[str, Any]:
    """Under the results lock: skip the images the output already has, inspect the rest with bounded
    concurrency, one JSON line each as it finishes."""
    job = state["job"]
    inspection = configured(config, INSPECTION_KEY)
    progress: Callable[[dict[str, Any]], None] | None = configured(config, PROGRESS_KEY)
    options = job.options.model_copy(update={"return_heatmap": job.heatmaps})
    lock = ResultsLock(job.out)
    await asyncio.to_thread(lock.acquire)
    try:
        outcomes = await asyncio.to_thread(read_outcomes, job.out)  # checks every line, cuts a torn last one
        pending = [
            image
            for image in state["images"]
            if image not in outcomes or (job.retry_errors and outcomes[image] == "error")
        ]
        writer = await asyncio.to_thread(JsonlWriter, job.out)
        semaphore = asyncio.Semaphore(job.concurrency)
        done = 0

        async def one(image: str) -> None:
            nonlocal done
            async with semaphore:
                record = await _inspect_one(inspection, job, options, image)
                await writer.write(record)
                outcomes[image] = record.outcome
                done += 1
                if progress is not None:
                    progress({"stage": "triage", "done": done, "total": len(pending), "image": image})

        tasks = [asyncio.create_task(one(image)) for image in pending]
        try:
            await asyncio.gather(*tasks)
        finally:  # on a failure, stop the others before the file is closed and the lock let go
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(writer.close)
    finally:
        await asyncio.to_thread(lock.release)
    wanted = set(state["images"])
    return {
        "pending": pending,
        "finished": done,
        "outcomes": {image: outcome for image, outcome in outcomes.items() if image in wanted},
    }


async def _inspect_one(
    inspection: CompiledStateGraph[Any, Any, Any, Any], job: TriageJob, options: InspectionOptions, image: str
) -> TriageRecord:
    """One image's record: its report (heatmap saved beside the JSONL) or its error."""
    start = time.perf_counter()
    try:
        request = InspectionRequest(
            image=image, category=job.category, references=[str(p) for p in job.references], options=options
        )
        report = await run_inspection(inspection, request)
        heatmap = None
        if report.heatmap_png:
            heatmap = await asyncio.to_thread(_save_heatmap, job.out, image, report.heatmap_png)
        return TriageRecord(image=image, report=report, heatmap=heatmap, elapsed_ms=_elapsed(start))
    except OutputWriteError:
        raise
    except RiadError as exc:
        return TriageRecord(
            image=image,
            error={"type": type(exc).__name__, "message": exc.message},
            elapsed_ms=_elapsed(start),
        )
    except OSError as exc:  # heatmap file
        raise OutputWriteError(f"cannot write the heatmap of {image}: {exc.strerror or exc}") from exc
    except Exception as exc:  # a bug on one image must not end the batch: record it
        logger.exception("inspection of %s failed", image)
        return TriageRecord(
            image=image,
            error={"type": "InternalError", "message": f"{type(exc).__name__}: {exc}"},
            elapsed_ms=_elapsed(start),
        )


async def summarise(state: TriageState) -> dict[str, Any]:
    """Counts over the job's images, each once by its last line (earlier runs' lines included)."""
    job = state["job"]
    outcomes = state.get("outcomes", {})
    counts = {"anomalous": 0, "normal": 0, "uncertain": 0, "errors": 0}
    for image in state["images"]:
        outcome = outcomes.get(image)
        if outcome is not None:
            counts["errors" if outcome == "error" else outcome] += 1
    summary = TriageSummary(
        total=len(state["images"]),
        skipped=len(state["images"]) - len(state["pending"]),
        inspected=state.get("finished", 0),
        out=str(job.out),
        **counts,
    )
    return {"summary": summary}


def triage_graph() -> StateGraph[TriageState, None, TriageInput, TriageOutput]:
    """The uncompiled graph: state, nodes and edges."""
    graph = StateGraph(TriageState, input_schema=TriageInput, output_schema=TriageOutput)
    graph.add_node("list_images", list_node)
    graph.add_node("inspect_all", inspect_all)
    graph.add_node("summarise", summarise)
    graph.add_edge(START, "list_images")
    graph.add_edge("list_images", "inspect_all")
    graph.add_edge("inspect_all", "summarise")
    graph.add_edge("summarise", END)
    return graph


def build_triage_graph(
    settings: Settings | None = None,
    *,
    components: Components | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile the triage graph. Invoke it with ``{"job": TriageJob(...)}`` (or its JSON); the summary is
    in ``summary``. ``progress`` receives ``{"stage": "triage", "done", "total", "image"}`` per image."""
    if components is None:
        components = build_components(settings or Settings())
    inspection = build_inspection_graph(components=components, checkpointer=False)
    compiled = triage_graph().compile(name="riad-triage")
    return bind(compiled, components, **{INSPECTION_KEY: inspection, PROGRESS_KEY: progress})


def _elapsed(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


async def run_triage(job: TriageJob, graph: CompiledStateGraph[Any, Any, Any, Any]) -> TriageSummary:
    """Run a triage job to its summary."""
    state = await graph.ainvoke({"job": job})
    summary: TriageSummary = state["summary"]
    return summary
