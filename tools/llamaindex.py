"""The inspector as a llama-index ``FunctionTool`` returning a text block and the heatmap image."""

from __future__ import annotations

import base64
from typing import Any

from llama_index.core.base.llms.types import ContentBlock, ImageBlock, TextBlock
from llama_index.core.tools import FunctionTool

from riad_agent.errors import RiadError
from riad_agent.inspector import Inspector
from riad_agent.schemas import InspectionRequest
from riad_agent.settings import Settings
from riad_agent.tools.common import TOOL_DESCRIPTION, TOOL_NAME, report_text, tool_inspector


def inspection_function_tool(settings: Settings | None = None, inspector: Inspector | None = None) -> FunctionTool:
    """A ``FunctionTool`` with the ``InspectionRequest`` schema; typed errors come back as text."""
    runner = tool_inspector(settings, inspector)

    async def inspect_image(**arguments: Any) -> list[ContentBlock]:
        try:
            request = InspectionRequest.model_validate(arguments)
            request = request.model_copy(
                update={"options": request.options.model_copy(update={"return_heatmap": True})}
            )
            report = await runner.ainspect(request)
        except RiadError as exc:
            return [TextBlock(text=f"Error: {exc.one_line()}")]
        blocks: list[ContentBlock] = [TextBlock(text=report_text(report))]
        if report.heatmap_png:
            blocks.append(ImageBlock(image=base64.b64encode(report.heatmap_png), image_mimetype="image/png"))
        return blocks

    return FunctionTool.from_defaults(
        async_fn=inspect_image, name=TOOL_NAME, description=TOOL_DESCRIPTION, fn_schema=InspectionRequest
    )
