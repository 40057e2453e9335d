"""Time every stage of one inspection: the inspection graph's own nodes, streamed.

Each inspection runs through the compiled graph with ``stream_mode="tasks"``; a node's time is
from its task's start event to its result event. The reasoner's stages (prompt preparation and
prefix forward, latent loop, decode) are the timings the ``latent_reasoning`` node reports.

    image_load  load_inputs (query and references)     prefix_forward  reasoner prepare + prefix
    retrieval   retrieve_knowledge                     latent_loop     reasoner latent loop
    expert      expert_analysis                        decode          reasoner decode
    formatting  explain (the report)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from riad_agent.errors import RiadError
from riad_agent.schemas import InspectionReport, InspectionRequest

STAGES: tuple[str, ...] = (
    "image_load",
    "retrieval",
    "expert",
    "prefix_forward",
    "latent_loop",
    "decode",
    "formatting",
)

#: Stage timed as a whole node of the graph.
NODE_STAGES = {
    "load_inputs": "image_load",
    "retrieve_knowledge": "retrieval",
    "expert_analysis": "expert",
    "explain": "formatting",
}
#: Stage timed inside ``latent_reasoning``: the sum of these reasoner timings (``ReasoningResult.timings_ms``).
REASONER_STAGES = {
    "prefix_forward": ("prepare_ms", "prefix_ms"),
    "latent_loop": ("latent_ms",),
    "decode": ("decode_ms",),
}


@dataclass
class StageSamples:
    """Milliseconds per stage, one value per image."""

    samples: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in STAGES})

    def add(self, timings: dict[str, float]) -> None:
        """Append one inspection's stage times."""
        for stage in STAGES:
            self.samples[stage].append(timings[stage])


async def timed_inspection(
    graph: CompiledStateGraph[Any, Any, Any, Any], request: InspectionRequest
) -> tuple[dict[str, float], InspectionReport]:
    """Run one inspection through ``graph``; every stage's milliseconds and the report."""
    config: RunnableConfig = {"configurable": {"thread_id": uuid.uuid4().hex}}
    started: dict[str, float] = {}
    timings: dict[str, float] = {}
    report: InspectionReport | None = None
    async for event in graph.astream({"request": request}, config=config, stream_mode="tasks"):
        now = time.perf_counter()
        name = event["name"]
        if "result" not in event:  # a task starts
            started[event["id"]] = now
            continue
        if name in NODE_STAGES:
            timings[NODE_STAGES[name]] = (now - started[event["id"]]) * 1000.0
        result = event["result"] or {}
        if name == "latent_reasoning" and result.get("reasoning") is not None:
            reasoner = result["reasoning"].timings_ms
            for stage, keys in REASONER_STAGES.items():
                timings[stage] = sum(reasoner[key] for key in keys)
        if name == "explain":
            report = result["report"]
    missing = [stage for stage in STAGES if stage not in timings]
    if report is None or missing:
        degraded = ", ".join(report.degraded) if report is not None else "no report"
        raise RiadError(f"the inspection skipped the stages {', '.join(missing)} ({degraded})")
    return timings, report


def inspect_once(
    graph: CompiledStateGraph[Any, Any, Any, Any], request: InspectionRequest, samples: StageSamples
) -> InspectionReport:
    """One inspection through the graph, appending each stage's time to ``samples``."""
    timings, report = asyncio.run(timed_inspection(graph, request))
    samples.add(timings)
    return report
