"""The inspector as a LangChain tool: text verdict and heatmap for the model, the report as artifact.

from riad_agent.tools.langchain import inspection_tool
agent = langchain.agents.create_agent(model, tools=[inspection_tool()])
agent = langchain.agents.create_agent(model, tools=agent_tools())  # with the product and triage tools
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.tools import StructuredTool, ToolException
from pydantic import BaseModel

from riad_agent.errors import RiadError
from riad_agent.inspector import Inspector
from riad_agent.schemas import InspectionReport, InspectionRequest
from riad_agent.settings import Settings
from riad_agent.tools.common import (
    TOOL_DESCRIPTION,
    TOOL_NAME,
    heatmap_base64,
    report_text,
    run_sync,
    tool_inspector,
    validation_error_text,
)
from riad_agent.tools.products import PRODUCT_TOOLS, ProductTools, ProductToolSpec, ToolReply
from riad_agent.tools.triage import TRIAGE, TRIAGE_DESCRIPTION, TriageArgs, TriageTool

ToolOutput = tuple[list[dict[str, Any]], InspectionReport]


def content_blocks(report: InspectionReport, full_heatmap: bool = False) -> list[dict[str, Any]]:
    """LangChain standard content blocks: the text verdict, then the heatmap (small unless ``full_heatmap``)."""
    blocks: list[dict[str, Any]] = [{"type": "text", "text": report_text(report)}]
    heatmap = heatmap_base64(report, full_size=full_heatmap)
    if heatmap is not None:
        blocks.append({"type": "image", "base64": heatmap, "mime_type": "image/png"})
    return blocks


def inspection_tool(
    settings: Settings | None = None,
    inspector: Inspector | None = None,
    *,
    return_heatmap: bool = True,
    full_heatmap: bool = False,
) -> StructuredTool:
    """A ``StructuredTool`` with the ``InspectionRequest`` schema and ``content_and_artifact`` output.

    Bad input (arguments the schema refuses, a missing file, a path outside the allowed roots, a
    URL, an unknown category) comes back to the model as the tool's error text rather than an
    exception, so the agent can correct it. The message carries a heatmap of at most 64 KB
    (``full_heatmap=True``: the full-size one); the artifact, the report, always has the full one.
    It runs with ``invoke`` as well as ``ainvoke``.
    """
    runner = tool_inspector(settings, inspector)

    def request_of(arguments: dict[str, Any]) -> InspectionRequest:
        request = InspectionRequest.model_validate(arguments)
        if return_heatmap and not request.options.return_heatmap:
            request = request.model_copy(
                update={"options": request.options.model_copy(update={"return_heatmap": True})}
            )
        return request

    async def arun(**arguments: Any) -> ToolOutput:
        try:
            report = await runner.ainspect(request_of(arguments))
        except RiadError as exc:
            raise ToolException(exc.one_line()) from exc
        return content_blocks(report, full_heatmap), report

    def run(**arguments: Any) -> ToolOutput:
        return run_sync(arun(**arguments))

    return StructuredTool.from_function(
        func=run,
        coroutine=arun,
        name=TOOL_NAME,
        description=TOOL_DESCRIPTION,
        args_schema=InspectionRequest,
        response_format="content_and_artifact",
        handle_tool_error=True,
        handle_validation_error=validation_error_text,
    )


def _text_tool(
    name: str,
    description: str,
    args: type[BaseModel],
    acall: Callable[[dict[str, Any]], Awaitable[ToolReply]],
    call: Callable[[dict[str, Any]], ToolReply] | None = None,
) -> StructuredTool:
    """A tool whose reply is text; a refusal is raised as the tool's error text. ``call``: a synchronous
    form of ``acall`` (default: ``acall`` run to completion)."""

    def text(reply: ToolReply) -> str:
        if reply.error:
            raise ToolException(reply.text)
        return reply.text

    async def arun(**arguments: Any) -> str:
        return text(await acall(arguments))

    def run(**arguments: Any) -> str:
        return text(call(arguments) if call is not None else run_sync(acall(arguments)))

    return StructuredTool.from_function(
        func=run,
        coroutine=arun,
        name=name,
        description=description,
        args_schema=args,
        handle_tool_error=True,
        handle_validation_error=validation_error_text,
    )


def product_tools(
    settings: Settings | None = None, inspector: Inspector | None = None
) -> list[StructuredTool]:
    """``register_product``, ``add_defect_exemplar``, ``list_products`` and ``forget_product``.

    They work on ``inspector``'s components (pass the inspection tool's inspector so both share the
    registry and the allowed roots); a refusal comes back to the model as the tool's error text.
    """
    operations = ProductTools(tool_inspector(settings, inspector).components)

    def make(spec: ProductToolSpec) -> StructuredTool:
        return _text_tool(
            spec.name,
            spec.description,
            spec.args,
            lambda arguments: operations.acall(spec.name, arguments),
            lambda arguments: operations.call(spec.name, arguments),
        )

    return [make(spec) for spec in PRODUCT_TOOLS]


def triage_tool(settings: Settings | None = None, inspector: Inspector | None = None) -> StructuredTool:
    """``triage_images``: a folder of images against the same references or product, results to a JSONL
    file and its page, the counts, cautions and worst images back to the model (:mod:`riad_agent.tools.triage`)."""
    operation = TriageTool(tool_inspector(settings, inspector).components)
    return _text_tool(TRIAGE, TRIAGE_DESCRIPTION, TriageArgs, operation.acall)


def agent_tools(settings: Settings | None = None, inspector: Inspector | None = None) -> list[StructuredTool]:
    """The inspection tool, the product tools and the triage tool on one inspector (one registry, one policy)."""
    runner = tool_inspector(settings, inspector)
    return [
        inspection_tool(inspector=runner),
        *product_tools(inspector=runner),
        triage_tool(inspector=runner),
    ]
