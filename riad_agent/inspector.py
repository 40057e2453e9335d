"""The smallest way to use riad-agent from Python.

    from riad_agent.inspector import Inspector
    report = Inspector().inspect(InspectionRequest(image="part.png", references=["good1.png"]))

An :class:`Inspector` compiles the inspection graph once and runs requests through it, with an
optional progress callback that receives the graph's custom stream events.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from langchain_core.runnables import RunnableConfig

from riad_agent.components import Components, build_components
from riad_agent.errors import RiadError
from riad_agent.schemas import InspectionReport, InspectionRequest, parse_request
from riad_agent.settings import Settings, load_settings

ProgressHandler = Callable[[dict[str, Any]], None]

__all__ = ["Inspector", "ProgressHandler", "parse_request"]


class Inspector:
    """Runs inspections through the compiled graph; thread-safe for concurrent async calls."""

    def __init__(self, settings: Settings | None = None, components: Components | None = None) -> None:
        from riad_agent.graphs.inspection import build_inspection_graph

        self.settings = settings or (components.settings if components else load_settings())
        self.components = components or build_components(self.settings)
        self.graph = build_inspection_graph(components=self.components)

    async def astream(
        self, request: InspectionRequest | dict[str, Any]
    ) -> AsyncIterator[dict[str, Any] | InspectionReport]:
        """Yield progress events (dicts such as ``{"stage": "expert_analysis"}``), then the report."""
        request = parse_request(request)
        config: RunnableConfig = {"configurable": {"thread_id": uuid.uuid4().hex}}
        state: dict[str, Any] = {}
        async for mode, chunk in self.graph.astream(
            {"request": request}, config=config, stream_mode=["custom", "values"]
        ):
            if mode == "custom" and isinstance(chunk, dict):
                yield chunk
            elif mode == "values" and isinstance(chunk, dict):
                state = chunk
        if "report" not in state:
            raise RiadError("the inspection paused for human review; resume it through the graph API")
        yield state["report"]

    async def ainspect(
        self, request: InspectionRequest | dict[str, Any], progress: ProgressHandler | None = None
    ) -> InspectionReport:
        """Inspect one image; ``progress`` receives events such as ``{"stage": "expert_analysis"}``."""
        async for item in self.astream(request):
            if isinstance(item, InspectionReport):
                return item
            if progress is not None:
                progress(item)
        raise RiadError("the inspection ended without a report")  # unreachable: astream ends with one

    def inspect(
        self, request: InspectionRequest | dict[str, Any], progress: ProgressHandler | None = None
    ) -> InspectionReport:
        """Synchronous :meth:`ainspect` (not for use inside a running event loop)."""
        return asyncio.run(self.ainspect(request, progress))
