"""Batch triage: many images through the inspection graph, results streamed to JSONL as they finish.

    list_images -> inspect_all -> summarise -> END

``inspect_all`` holds the results file's lock (``graphs/triage_results.py``) from reading it to its
last line: a second run on the same file fails with ``ResultsLockedError``. It skips every image
that already has a line, then triages each pending image with bounded concurrency
(``graphs/triage_image.py``: the fast path of ``graphs/triage_fast.py`` for every image, the
inspection graph with the latent reasoner as a subgraph only where ``reasoner`` asks for it) and
appends one JSON line per image the moment it finishes (flushed and fsynced), so a crash loses at
most the images in flight and a re-run redoes nothing and duplicates nothing. A torn last line from a crash is cut off before appending; any other unexpected content is a
``ResultsFileError`` and the file is left as it was. A bad image becomes an ``error`` line instead
of stopping the batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic builds JSON schemas of typing_extensions' TypedDict only

from riad_agent.components import Components, build_components
from riad_agent.errors import InvalidRequestError
from riad_agent.graphs.context import bind, components_of, configured
from riad_agent.graphs.inspection import build_inspection_graph
from riad_agent.graphs.triage_fast import ReasonerMode
from riad_agent.graphs.triage_image import ImageTriage, common_root
from riad_agent.graphs.triage_results import (
    JsonlWriter,
    Outcome,
    ResultsLock,
    check_same_batch,
    read_outcomes,
    read_records,
)
from riad_agent.graphs.triage_results import TriageRecord as TriageRecord  # for callers of before
from riad_agent.graphs.triage_results import read_finished as read_finished  # for callers of before
from riad_agent.schemas import InspectionOptions, validated
from riad_agent.settings import Settings
from riad_agent.triage_recurring import recurring_places
from riad_agent.triage_view import rows_from_records

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
    reasoner: ReasonerMode = Field(
        default="uncertain",
        description="When the latent reasoner (the whole inspection graph) runs after the fast path: for "
        "every image, for uncertain ones (by the graph's rule: not when the reasoner only repeats the "
        "expert's score, as the builtin model does), or never (options.use_reasoner = false also means never).",
    )
    root: Path | None = Field(
        default=None, description="Records' paths are relative to it (default: the folder, or the list's)."
    )


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
    cautions: list[str] = Field(
        default_factory=list,
        description="Patterns the results file shows that no single image does: where most of a "
        "product's anomalous images peak at the same place (riad_agent.triage_recurring).",
    )

    @classmethod
    def counted(
        cls, outcomes: Sequence[str], *, total: int, skipped: int, inspected: int, out: Path
    ) -> TriageSummary:
        """The summary of the job's images' outcomes (``normal``, ``anomalous``, ``uncertain``, ``error``),
        with the cautions the whole results file ``out`` gives (:func:`recurring_cautions`)."""
        return cls(
            total=total,
            skipped=skipped,
            inspected=inspected,
            anomalous=sum(outcome == "anomalous" for outcome in outcomes),
            normal=sum(outcome == "normal" for outcome in outcomes),
            uncertain=sum(outcome == "uncertain" for outcome in outcomes),
            errors=sum(outcome == "error" for outcome in outcomes),
            out=str(out),
            cautions=recurring_cautions(out),
        )


def recurring_cautions(out: Path) -> list[str]:
    """The sentences of :func:`~riad_agent.triage_recurring.recurring_places` for the results in ``out``
    (each image by its last line; none when the file does not exist)."""
    if not out.exists():
        return []
    return [place.sentence() for place in recurring_places(rows_from_records(read_records(out)))]


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
    """Under the results lock: skip the images the output already has, triage the rest with bounded
    concurrency, one JSON line each as it finishes."""
    job = state["job"]
    progress: Callable[[dict[str, Any]], None] | None = configured(config, PROGRESS_KEY)
    triage = image_triage(job, components_of(config), configured(config, INSPECTION_KEY), state["images"])
    lock = ResultsLock(job.out)
    await asyncio.to_thread(lock.acquire)
    try:
        outcomes = await asyncio.to_thread(read_outcomes, job.out)  # checks every line, cuts a torn last one
        check_same_batch(job.out, outcomes, state["images"], triage.root)
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
                record = await triage.record(image)
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
            triage.close()
    finally:
        await asyncio.to_thread(lock.release)
    wanted = set(state["images"])
    return {
        "pending": pending,
        "finished": done,
        "outcomes": {image: outcome for image, outcome in outcomes.items() if image in wanted},
    }


def image_triage(
    job: TriageJob,
    components: Components,
    inspection: CompiledStateGraph[Any, Any, Any, Any],
    images: list[str],
) -> ImageTriage:
    """The per-image worker of ``job`` (records' paths relative to its folder, or to the list's)."""
    root = job.root or (job.images.resolve() if isinstance(job.images, Path) else common_root(images))
    return ImageTriage(
        components,
        inspection,
        out=job.out,
        root=root,
        category=job.category,
        references=[str(p) for p in job.references],
        options=job.options,
        reasoner=job.reasoner,
        heatmaps=job.heatmaps,
        decoders=job.concurrency,
    )


async def summarise(state: TriageState) -> dict[str, Any]:
    """Counts over the job's images, each once by its last line (earlier runs' lines included)."""
    job = state["job"]
    outcomes = state.get("outcomes", {})
    summary = TriageSummary.counted(
        [outcomes[image] for image in state["images"] if image in outcomes],
        total=len(state["images"]),
        skipped=len(state["images"]) - len(state["pending"]),
        inspected=state.get("finished", 0),
        out=job.out,
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


async def run_triage(job: TriageJob, graph: CompiledStateGraph[Any, Any, Any, Any]) -> TriageSummary:
    """Run a triage job to its summary."""
    state = await graph.ainvoke({"job": job})
    summary: TriageSummary = state["summary"]
    return summary
