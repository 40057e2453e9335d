"""Batch triage throughput (images per second) at several worker counts, on the same parts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from pydantic import BaseModel

from riad_agent.graphs.triage import TriageJob, build_triage_graph, run_triage
from riad_agent.protocols import (
    Expert,
    KnowledgeBase,
    Reasoner,
)
from riad_agent.schemas import InspectionOptions
from riad_agent.settings import Settings


class TriageThroughput(BaseModel):
    """One triage run over the same folder."""

    workers: int
    images: int
    errors: int
    seconds: float
    images_per_s: float


def measure_triage(
    settings: Settings,
    knowledge: KnowledgeBase,
    expert: Expert,
    reasoner: Reasoner,
    folder: Path,
    references: list[Path],
    category: str,
    workers: list[int],
    out_dir: Path,
    latent_steps: int,
) -> list[TriageThroughput]:
    """Run the triage graph over ``folder`` once per worker count (fresh JSONL each time)."""
    from riad_agent.components import build_components

    components = build_components(
        settings, knowledge=knowledge, expert=expert, reasoner=reasoner
    )
    graph = build_triage_graph(components=components)
    results: list[TriageThroughput] = []
    for count in workers:
        job = TriageJob(
            images=folder,
            out=out_dir / f"triage-{count}.jsonl",
            category=category,
            references=references,
            options=InspectionOptions(latent_steps=latent_steps),
            concurrency=count,
            heatmaps=False,
        )
        started = time.perf_counter()
        summary = asyncio.run(run_triage(job, graph))
        seconds = time.perf_counter() - started
        results.append(
            TriageThroughput(
                workers=count,
                images=summary.inspected,
                errors=summary.errors,
                seconds=seconds,
                images_per_s=summary.inspected / seconds if seconds > 0 else 0.0,
            )
        )
    return results
