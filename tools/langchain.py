"""The inspector as a LangChain tool: text verdict and heatmap for the model, the report as artifact.

    from riad_agent.tools.langchain import inspection_tool
    agent = langchain.agents.create_agent(model, tools=[inspection_tool()])
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import StructuredTool, ToolException

from riad_agent.errors import RiadError
from riad_agent.inspector import Inspector
from riad_agent.schemas import InspectionReport, InspectionRequest
from riad_agent.settings import Settings
from riad_agent.tools.common import TOOL_DESCRIPTION, TOOL_NAME, heatmap_base64, report_text, tool_inspector


def content_blocks(report: InspectionReport) -> list[dict[str, Any]]:
    """LangChain standard content blocks: the text verdict, then the heatmap image when present."""
    blocks: list[dict[str, Any]] = [{"type": "text", "text": report_text(report)}]
    heatmap = heatmap_base64(report)
    if heatmap is not None:
        blocks.append({"type": "image", "base64": heatmap, "mime_type": "image/png"})
    return blocks


def inspection_tool(
    settings: Settings | None = None, inspector: Inspector | None = None, *, return_heatmap: bool = True
) -> StructuredTool:
    """A ``StructuredTool`` with the ``InspectionRequest`` schema and ``content_and_artifact`` output.

    Bad input (a missing file, a path outside the allowed roots, a URL, an unknown category) comes
    back to the model as the tool's error text rather than an exception, so the agent can correct it.
    """
    runner = tool_inspector(settings, inspector)

    async def run(**arguments: Any) -> tuple[list[dict[str, Any]], InspectionReport]:
        try:
            request = InspectionRequest.model_validate(arguments)
            if return_heatmap and not request.options.return_heatmap:
                request = request.model_copy(
                    update={"options": request.options.model_copy(update={"return_heatmap": True})}
                )
            report = await runner.ainspect(request)
        except RiadError as exc:
            raise ToolException(exc.one_line()) from exc
        return content_blocks(report), report

    return StructuredTool.from_function(
        coroutine=run,
        name=TOOL_NAME,
        description=TOOL_DESCRIPTION,
        args_schema=InspectionRequest,
        response_format="content_and_artifact",
        handle_tool_error=True,
    )
