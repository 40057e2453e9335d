"""The inspector as an MCP server (stdio or streamable HTTP), reporting progress while it works.

riad serve mcp                      # stdio, for desktop assistants
riad serve mcp --http --port 8765   # streamable HTTP on 127.0.0.1
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any, Literal

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.types import ImageContent, TextContent
from pydantic import BaseModel, Field, ValidationError, WithJsonSchema

from riad_agent.errors import RiadError
from riad_agent.graphs.inspection import PROGRESS_STAGES
from riad_agent.inspector import Inspector
from riad_agent.schemas import InspectionOptions, InspectionReport, InspectionRequest, MultipleChoiceQuestion
from riad_agent.settings import Settings
from riad_agent.tools.common import (
    TOOL_DESCRIPTION,
    TOOL_NAME,
    heatmap_base64,
    report_json,
    tool_inspector,
    validation_error_text,
)
from riad_agent.tools.products import (
    ADD_DEFECT,
    FORGET,
    LIST,
    PRODUCT_TOOLS,
    REGISTER,
    AddDefectArgs,
    ForgetProductArgs,
    ProductTools,
    RegisterProductArgs,
)
from riad_agent.tools.triage import TRIAGE, TRIAGE_DESCRIPTION, TriageArgs, TriageTool

#: Stages of the inspection graph in the order they run, for progress fractions.
STAGES = PROGRESS_STAGES


def _field(model: type[BaseModel], name: str) -> Any:
    """``Any`` declared with the JSON schema of ``model``'s field ``name`` (validated inside the tool)."""
    schema = dict(model.model_json_schema()["properties"][name])
    schema.pop("title", None)
    return Annotated[Any, WithJsonSchema(schema)]


_DESCRIPTIONS = {spec.name: spec.description for spec in PRODUCT_TOOLS}


def _nullable(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of ``model`` or null, for a tool argument validated inside the tool."""
    return {"anyOf": [model.model_json_schema(), {"type": "null"}]}


class StageProgress:
    """Progress as stages done out of :data:`STAGES`; it never goes backwards.

    A stage the graph skips is passed over; an event that arrives late (a reasoner still reporting
    after it timed out) or names no known stage keeps the count where it is.
    """

    def __init__(self) -> None:
        self.done = 0

    def advance(self, event: dict[str, Any]) -> tuple[int, int, str]:
        """(stages done, stages in all, message) after ``event``."""
        stage = str(event.get("stage", ""))
        if stage in STAGES:
            self.done = max(self.done, STAGES.index(stage))
        message = stage + (f" iteration {event['iteration']}" if "iteration" in event else "")
        return self.done, len(STAGES), message


def build_mcp_server(
    settings: Settings | None = None,
    inspector: Inspector | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    full_heatmap: bool = False,
) -> FastMCP[Any]:
    """A FastMCP server with ``inspect_industrial_image`` (JSON and the heatmap) and the product tools.

    The heatmap image is at most 64 KB unless ``full_heatmap``; bad arguments and bad images come
    back as one typed line (a tool error). The product tools (``register_product``,
    ``add_defect_exemplar``, ``list_products``, ``forget_product``) share the inspector's registry.
    """
    server: FastMCP[Any] = FastMCP(
        "riad-agent",
        instructions=(
            "Industrial visual inspection: call inspect_industrial_image with a product image; "
            "register_product and add_defect_exemplar teach it a product line."
        ),
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
        image: Annotated[Any, WithJsonSchema({"type": "string"})] = Field(
            description="Image file path, base64 string or data URI."
        ),
        category: Annotated[Any, WithJsonSchema({"type": ["string", "null"]})] = Field(
            default=None, description="Product category, e.g. 'hazelnut'."
        ),
        references: Annotated[Any, WithJsonSchema({"type": "array", "items": {"type": "string"}})] = Field(
            default_factory=list, description="Normal reference images."
        ),
        question: Annotated[Any, WithJsonSchema(_nullable(MultipleChoiceQuestion))] = Field(
            default=None, description="Optional multiple-choice question."
        ),
        options: Annotated[Any, WithJsonSchema(_nullable(InspectionOptions))] = Field(
            default=None, description="Inspection options."
        ),
    ) -> list[TextContent | ImageContent]:
        # the arguments are validated here, into the request, so that a refusal is one typed line
        try:
            request = InspectionRequest.model_validate(
                {"image": image, "category": category, "references": references, "question": question}
                | ({"options": options} if options is not None else {})
            )
            request = request.model_copy(
                update={"options": request.options.model_copy(update={"return_heatmap": True})}
            )
            report: InspectionReport | None = None
            progress = StageProgress()
            async with contextlib.aclosing(runner().astream(request)) as stream:
                async for item in stream:
                    if isinstance(item, InspectionReport):
                        report = item
                        break
                    await ctx.report_progress(*progress.advance(item))
        except ValidationError as exc:
            raise ToolError(validation_error_text(exc)) from exc
        except RiadError as exc:
            raise ToolError(exc.one_line()) from exc
        assert report is not None
        await ctx.report_progress(len(STAGES), len(STAGES), "done")
        content: list[TextContent | ImageContent] = [TextContent(type="text", text=report_json(report))]
        heatmap = heatmap_base64(report, full_size=full_heatmap)
        if heatmap is not None:
            content.append(ImageContent(type="image", data=heatmap, mimeType="image/png"))
        return content

    products = ProductTools(lambda: runner().components)

    async def reply(tool: str, arguments: dict[str, Any]) -> str:
        answer = await products.acall(tool, {k: v for k, v in arguments.items() if v is not None})
        if answer.error:
            raise ToolError(answer.text)
        return answer.text

    @server.tool(name=REGISTER, description=_DESCRIPTIONS[REGISTER])
    async def register_product(
        name: _field(RegisterProductArgs, "name"),  # type: ignore[valid-type]
        images: _field(RegisterProductArgs, "images"),  # type: ignore[valid-type]
        knowledge: _field(RegisterProductArgs, "knowledge") = None,  # type: ignore[valid-type]
        pose: _field(RegisterProductArgs, "pose") = None,  # type: ignore[valid-type]
    ) -> str:
        return await reply(REGISTER, {"name": name, "images": images, "knowledge": knowledge, "pose": pose})

    @server.tool(name=ADD_DEFECT, description=_DESCRIPTIONS[ADD_DEFECT])
    async def add_defect_exemplar(
        name: _field(AddDefectArgs, "name"),  # type: ignore[valid-type]
        defect_type: _field(AddDefectArgs, "defect_type"),  # type: ignore[valid-type]
        image: _field(AddDefectArgs, "image"),  # type: ignore[valid-type]
        mask: _field(AddDefectArgs, "mask") = None,  # type: ignore[valid-type]
    ) -> str:
        return await reply(
            ADD_DEFECT, {"name": name, "defect_type": defect_type, "image": image, "mask": mask}
        )

    @server.tool(name=LIST, description=_DESCRIPTIONS[LIST])
    async def list_products() -> str:
        return await reply(LIST, {})

    @server.tool(name=FORGET, description=_DESCRIPTIONS[FORGET])
    async def forget_product(
        name: _field(ForgetProductArgs, "name"),  # type: ignore[valid-type]
        defect_type: _field(ForgetProductArgs, "defect_type") = None,  # type: ignore[valid-type]
    ) -> str:
        return await reply(FORGET, {"name": name, "defect_type": defect_type})

    triage = TriageTool(lambda: runner().components)

    @server.tool(name=TRIAGE, description=TRIAGE_DESCRIPTION)
    async def triage_images(
        ctx: Context,
        folder: _field(TriageArgs, "folder"),  # type: ignore[valid-type]
        category: _field(TriageArgs, "category") = None,  # type: ignore[valid-type]
        references: _field(TriageArgs, "references") = None,  # type: ignore[valid-type]
        out: _field(TriageArgs, "out") = None,  # type: ignore[valid-type]
        reasoner: _field(TriageArgs, "reasoner") = None,  # type: ignore[valid-type]
        listed: _field(TriageArgs, "listed") = None,  # type: ignore[valid-type]
        limit: _field(TriageArgs, "limit") = None,  # type: ignore[valid-type]
    ) -> str:
        arguments = {"folder": folder, "category": category, "references": references, "out": out}
        arguments |= {"reasoner": reasoner, "listed": listed, "limit": limit}
        sent: list[asyncio.Task[None]] = []

        def progress(event: dict[str, Any]) -> None:  # on the event loop, once per finished image
            done, total = int(event.get("done", 0)), int(event.get("total", 0))
            sent.append(
                asyncio.ensure_future(ctx.report_progress(done, total or None, str(event.get("image", ""))))
            )

        answer = await triage.acall({k: v for k, v in arguments.items() if v is not None}, progress)
        await asyncio.gather(*sent, return_exceptions=True)
        if answer.error:
            raise ToolError(answer.text)
        return answer.text

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
