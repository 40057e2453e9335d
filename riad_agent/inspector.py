"""The smallest way to use riad-agent from Python.

    from riad_agent.inspector import Inspector
    report = Inspector().inspect(InspectionRequest(image="part.png", references=["good1.png"]))

An :class:`Inspector` compiles the inspection graph once and runs requests through it, with an
optional progress callback that receives the graph's custom stream events. Nobody resumes its runs,
so it keeps no checkpoints, except with human review on (``review_threshold``): then a run that
pauses stays in the configured checkpointer under the thread id its error names, and finished runs
are deleted from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Callable
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
        from riad_agent.graphs.checkpoints import checkpointer_from_settings
        from riad_agent.graphs.inspection import build_inspection_graph

        self.settings = settings or (components.settings if components else load_settings())
        self.components = components or build_components(self.settings)
        self.checkpointer = (
            checkpointer_from_settings(self.components.settings)
            if self.components.settings.review_threshold is not None
            else None
        )
        self.graph = build_inspection_graph(
            components=self.components, checkpointer=self.checkpointer if self.checkpointer else False
        )

    async def astream(
        self, request: InspectionRequest | dict[str, Any]
    ) -> AsyncGenerator[dict[str, Any] | InspectionReport, None]:
        """Yield progress events (dicts such as ``{"stage": "expert_analysis"}``), then the report."""
        request = parse_request(request)
        thread_id = uuid.uuid4().hex
        config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
        state: dict[str, Any] = {}
        stream = self.graph.astream({"request": request}, config=config, stream_mode=["custom", "values"])
        async with contextlib.aclosing(stream):
            async for mode, chunk in stream:
                if mode == "custom" and isinstance(chunk, dict):
                    yield chunk
                elif mode == "values" and isinstance(chunk, dict):
                    state = chunk
        if "report" not in state:
            raise RiadError(
                f"the inspection paused for human review (thread {thread_id}); "
                "resume it through the graph API with Command(resume=...)"
            )
        if self.checkpointer is not None:
            await self.checkpointer.adelete_thread(thread_id)  # finished: nobody resumes it
        yield state["report"]

    async def ainspect(
        self, request: InspectionRequest | dict[str, Any], progress: ProgressHandler | None = None
    ) -> InspectionReport:
        """Inspect one image; ``progress`` receives events such as ``{"stage": "expert_analysis"}``."""
        async with contextlib.aclosing(self.astream(request)) as stream:
            async for item in stream:
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
