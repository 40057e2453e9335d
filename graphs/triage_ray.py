"""Triage on Ray Data: the same records as a local run, from actors that each hold a warm inspector.

The driver lists the images, takes the results lock, reads the results file and sends only the
pending images to Ray Data (``map_batches`` over a pool of :class:`TriageActor`). Each actor builds
its components once (the expert and its reference bank stay warm) and runs the same per-image code
as a local run (:class:`~riad_agent.graphs.triage_image.ImageTriage`: fast path, the graph with the
reasoner where asked); the driver appends each record as it streams back (flushed and fsynced). So
a run killed at any point resumes from the results file with nothing lost or duplicated, and the
records equal a local run's (up to ``elapsed_ms``). Paths are local paths: on a real cluster every
node must see the same files (a shared mount); ``docs/deploy.md`` says how an object store fits in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from riad_agent.components import Components, build_components
from riad_agent.errors import BackendUnavailableError
from riad_agent.graphs.inspection import build_inspection_graph
from riad_agent.graphs.triage import TriageJob, TriageSummary, image_triage, list_images
from riad_agent.graphs.triage_image import common_root
from riad_agent.graphs.triage_results import (
    JsonlWriter,
    RecordHead,
    ResultsLock,
    check_same_batch,
    read_outcomes,
)
from riad_agent.settings import Settings

ComponentsFactory = Callable[[], Components]

#: Images per call of an actor (small: records stream back as batches finish).
BATCH = 2


class TriageActor:
    """A Ray Data actor: a warm inspector for one job; a batch of image paths in, JSONL lines out."""

    def __init__(self, job: TriageJob, factory: ComponentsFactory) -> None:
        components = factory()
        inspection = build_inspection_graph(components=components, checkpointer=False)
        self.triage = image_triage(job, components, inspection, [])

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        images = [str(image) for image in batch["image"]]

        async def records() -> list[str]:
            done = await asyncio.gather(*(self.triage.record(image) for image in images))
            return [record.model_dump_json(exclude={"report": {"heatmap_png"}}) + "\n" for record in done]

        return {"image": images, "line": asyncio.run(records())}


def connect(address: str, workers: int) -> None:
    """Join the Ray cluster at ``address`` (``auto``: the running one), or start a local one (``local``)."""
    try:
        import ray
    except ImportError:
        raise BackendUnavailableError("--ray needs Ray: pip install 'riad-agent[ray]'") from None
    if ray.is_initialized():
        return
    try:
        if address == "local":
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BackendUnavailableError(f"cannot reach the Ray cluster at {address}: {exc}") from exc


def run_ray_triage(
    job: TriageJob,
    address: str,
    *,
    settings: Settings | None = None,
    factory: ComponentsFactory | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> TriageSummary:
    """Triage ``job`` on Ray Data with ``job.concurrency`` actors; records appended as they come back."""
    import ray.data

    images = list_images(job.images)
    root = job.root or (job.images.resolve() if isinstance(job.images, Path) else common_root(images))
    job = job.model_copy(update={"root": root})
    build = factory or _settings_factory(settings or Settings())
    lock = ResultsLock(job.out)
    lock.acquire()
    try:
        outcomes = read_outcomes(job.out)
        check_same_batch(job.out, outcomes, images, root)
        pending = [
            image
            for image in images
            if image not in outcomes or (job.retry_errors and outcomes[image] == "error")
        ]
        done = 0
        if pending:
            connect(address, job.concurrency)
            ray.data.DataContext.get_current().enable_progress_bars = False
            dataset = ray.data.from_items([{"image": image} for image in pending]).map_batches(
                TriageActor,
                fn_constructor_args=(job, build),
                batch_size=BATCH,
                concurrency=job.concurrency,
                num_cpus=1,
            )
            writer = JsonlWriter(job.out)
            try:
                for row in dataset.iter_rows():
                    line = str(row["line"])
                    writer.append(line)
                    outcomes[str(row["image"])] = RecordHead.model_validate_json(line).outcome
                    done += 1
                    if progress is not None:
                        progress(
                            {"stage": "triage", "done": done, "total": len(pending), "image": row["image"]}
                        )
            finally:
                writer.close()
    finally:
        lock.release()
    mine = [outcomes[image] for image in images if image in outcomes]
    return TriageSummary.counted(
        mine, total=len(images), skipped=len(images) - len(pending), inspected=done, out=job.out
    )


def _settings_factory(settings: Settings) -> ComponentsFactory:
    def build() -> Components:
        return build_components(settings)

    return build
