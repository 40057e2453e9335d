"""The inspector as a llama-index ``FunctionTool`` returning a text block and the heatmap image."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from llama_index.core.base.llms.types import ContentBlock, ImageBlock, TextBlock
from llama_index.core.tools import FunctionTool
from pydantic import BaseModel, ValidationError

from riad_agent.errors import RiadError
from riad_agent.inspector import Inspector
from riad_agent.schemas import InspectionRequest
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


def inspection_function_tool(
    settings: Settings | None = None, inspector: Inspector | None = None, *, full_heatmap: bool = False
) -> FunctionTool:
    """A ``FunctionTool`` with the ``InspectionRequest`` schema; typed errors come back as text.

    ``call`` (sync) runs the inspection on its own event loop and closes it cleanly; the heatmap
    block is at most 64 KB unless ``full_heatmap``.
    """
    runner = tool_inspector(settings, inspector)

    async def inspect_image(**arguments: Any) -> list[ContentBlock]:
        try:
            request = InspectionRequest.model_validate(arguments)
            request = request.model_copy(
                update={"options": request.options.model_copy(update={"return_heatmap": True})}
            )
            report = await runner.ainspect(request)
        except ValidationError as exc:
            return [TextBlock(text=f"Error: {validation_error_text(exc)}")]
        except RiadError as exc:
            return [TextBlock(text=f"Error: {exc.one_line()}")]
        blocks: list[ContentBlock] = [TextBlock(text=report_text(report))]
        heatmap = heatmap_base64(report, full_size=full_heatmap)
        if heatmap is not None:
            blocks.append(ImageBlock(image=heatmap.encode("ascii"), image_mimetype="image/png"))
        return blocks

    def inspect_image_sync(**arguments: Any) -> list[ContentBlock]:
        return run_sync(inspect_image(**arguments))

    return FunctionTool.from_defaults(
        fn=inspect_image_sync,
        async_fn=inspect_image,
        name=TOOL_NAME,
        description=TOOL_DESCRIPTION,
        fn_schema=InspectionRequest,
    )


def _text_function_tool(
    name: str,
    description: str,
    args: type[BaseModel],
    acall: Callable[[dict[str, Any]], Awaitable[ToolReply]],
    call: Callable[[dict[str, Any]], ToolReply] | None = None,
) -> FunctionTool:
    """A ``FunctionTool`` whose reply is text; a refusal is ``Error: ...`` text. ``call``: a synchronous
    form of ``acall`` (default: ``acall`` run to completion)."""

    def text(reply: ToolReply) -> str:
        return f"Error: {reply.text}" if reply.error else reply.text

    async def arun(**arguments: Any) -> str:
        return text(await acall(arguments))

    def run(**arguments: Any) -> str:
        return text(call(arguments) if call is not None else run_sync(acall(arguments)))

    return FunctionTool.from_defaults(
        fn=run, async_fn=arun, name=name, description=description, fn_schema=args
    )


def product_function_tools(
    settings: Settings | None = None, inspector: Inspector | None = None
) -> list[FunctionTool]:
    """The product tools as ``FunctionTool``s on ``inspector``'s components; a refusal is ``Error: ...`` text."""
    operations = ProductTools(tool_inspector(settings, inspector).components)

    def make(spec: ProductToolSpec) -> FunctionTool:
        return _text_function_tool(
            spec.name,
            spec.description,
            spec.args,
            lambda arguments: operations.acall(spec.name, arguments),
            lambda arguments: operations.call(spec.name, arguments),
        )

    return [make(spec) for spec in PRODUCT_TOOLS]


def triage_function_tool(
    settings: Settings | None = None, inspector: Inspector | None = None
) -> FunctionTool:
    """``triage_images`` as a ``FunctionTool`` (:mod:`riad_agent.tools.triage`); a refusal is ``Error: ...`` text."""
    operation = TriageTool(tool_inspector(settings, inspector).components)
    return _text_function_tool(TRIAGE, TRIAGE_DESCRIPTION, TriageArgs, operation.acall)


def agent_function_tools(
    settings: Settings | None = None, inspector: Inspector | None = None
) -> list[FunctionTool]:
    """The inspection tool, the product tools and the triage tool on one inspector (one registry, one policy)."""
    runner = tool_inspector(settings, inspector)
    return [
        inspection_function_tool(inspector=runner),
        *product_function_tools(inspector=runner),
        triage_function_tool(inspector=runner),
    ]
