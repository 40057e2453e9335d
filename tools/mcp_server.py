"""The inspector as an MCP server (stdio or streamable HTTP), reporting progress while it works.

    riad serve mcp                      # stdio, for desktop assistants
    riad serve mcp --http --port 8765   # streamable HTTP on 127.0.0.1
"""

from __future__ import annotations

from typing import Any, Literal

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.types import ImageContent, TextContent
from pydantic import Field

from riad_agent.errors import RiadError
from riad_agent.graphs.inspection import PROGRESS_STAGES
from riad_agent.inspector import Inspector
from riad_agent.schemas import InspectionOptions, InspectionReport, InspectionRequest, MultipleChoiceQuestion
from riad_agent.settings import Settings
from riad_agent.tools.common import TOOL_DESCRIPTION, TOOL_NAME, heatmap_base64, tool_inspector

#: Stages of the inspection graph in the order they run, for progress fractions.
STAGES = PROGRESS_STAGES


def build_mcp_server(
    settings: Settings | None = None,
    inspector: Inspector | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
) -> FastMCP[Any]:
    """A FastMCP server with one tool, ``inspect_industrial_image``, returning JSON and the heatmap."""
    server: FastMCP[Any] = FastMCP(
        "riad-agent",
        instructions="Industrial visual inspection: call inspect_industrial_image with a product image.",
        host=host,
        port=port,
    )
    state: dict[str, Inspector] = {}

    def runner() -> Inspector:
        if "inspector" not in state:
            state["inspector"] = tool_inspector(settings, inspector)
        return state["inspector"]

    @server.tool(name=TOOL_NAME, description=TOOL_DESCRIPTION)
    async def inspect_industrial_image(
        ctx: Context,
        image: str = Field(description="Image file path, base64 string or data URI."),
        category: str | None = Field(default=None, description="Product category, e.g. 'hazelnut'."),
        references: list[str] = Field(default_factory=list, description="Normal reference images."),
        question: MultipleChoiceQuestion | None = Field(default=None, description="Optional question."),
        options: InspectionOptions | None = Field(default=None, description="Inspection options."),
    ) -> list[TextContent | ImageContent]:
        try:
            request = InspectionRequest(
                image=image,
                category=category,
                references=list[str | bytes](references),
                question=question,
                options=(options or InspectionOptions()).model_copy(update={"return_heatmap": True}),
            )
            report: InspectionReport | None = None
            async for item in runner().astream(request):
                if isinstance(item, InspectionReport):
                    report = item
                    break
                stage = str(item.get("stage", ""))
                done = STAGES.index(stage) if stage in STAGES else 0
                message = stage + (f" iteration {item['iteration']}" if "iteration" in item else "")
                await ctx.report_progress(done, len(STAGES), message)
        except RiadError as exc:
            raise ToolError(exc.one_line()) from exc
        assert report is not None
        await ctx.report_progress(len(STAGES), len(STAGES), "done")
        content: list[TextContent | ImageContent] = [
            TextContent(type="text", text=report.model_dump_json(exclude={"heatmap_png"}))
        ]
        heatmap = heatmap_base64(report)
        if heatmap is not None:
            content.append(ImageContent(type="image", data=heatmap, mimeType="image/png"))
        return content

    return server


def serve_mcp(
    transport: Literal["stdio", "streamable-http"] = "stdio",
    host: str = "127.0.0.1",
    port: int = 8765,
    settings: Settings | None = None,
) -> None:
    """Run the MCP server until the client disconnects (stdio) or the process is stopped (HTTP)."""
    build_mcp_server(settings, host=host, port=port).run(transport=transport)


if __name__ == "__main__":
    serve_mcp()
