"""The inspector as a LangChain tool (direct, ToolNode, create_agent), a llama-index tool and over MCP."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from riad_agent.inspector import Inspector
from riad_agent.schemas import InspectionReport
from riad_agent.tools.langchain import inspection_tool
from riad_agent.tools.llamaindex import inspection_function_tool

SUPPORT = Path(__file__).resolve().parents[1] / "support"


def _call(args: dict[str, Any], call_id: str = "call-1") -> dict[str, Any]:
    return {"name": "inspect_industrial_image", "args": args, "id": call_id, "type": "tool_call"}


async def test_langchain_tool_returns_text_image_and_report(
    inspector: Inspector, images: dict[str, Path]
) -> None:
    tool = inspection_tool(inspector=inspector)
    assert tool.args_schema is not None
    assert "image" in tool.tool_call_schema.model_json_schema()["properties"]
    message = await tool.ainvoke(_call({"image": str(images["bad"]), "references": [str(images["ref0"])]}))
    assert isinstance(message, ToolMessage)
    text, image = message.content
    assert text["type"] == "text" and text["text"].startswith("anomalous")  # no category named: none guessed
    assert image["type"] == "image" and base64.b64decode(image["base64"]) == b"\x89PNGfake"
    report = message.artifact
    assert isinstance(report, InspectionReport) and report.verdict == "anomalous"


async def test_langchain_tool_errors_go_back_to_the_model(inspector: Inspector, tmp_path: Path) -> None:
    tool = inspection_tool(inspector=inspector)
    outside = await tool.ainvoke(_call({"image": "/etc/passwd"}))
    assert "PathNotAllowedError" in outside.content and outside.status == "error"
    url = await tool.ainvoke(_call({"image": "https://example.com/x.png"}))
    assert "URLs are refused" in url.content
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    zero = await tool.ainvoke(_call({"image": str(empty)}))
    assert "InvalidImageError" in zero.content


class ScriptedChatModel(GenericFakeChatModel):
    """A chat model that plays back scripted messages and accepts tools (for agent tests)."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self


async def test_create_agent_calls_the_tool(inspector: Inspector, images: dict[str, Path]) -> None:
    from langchain.agents import create_agent

    script = iter(
        [
            AIMessage(
                content="",
                tool_calls=[_call({"image": str(images["bad"]), "references": [str(images["ref0"])]})],
            ),
            AIMessage(content="The part is defective: a scratch near the top left."),
        ]
    )
    agent = create_agent(ScriptedChatModel(messages=script), tools=[inspection_tool(inspector=inspector)])
    result = await agent.ainvoke({"messages": [HumanMessage("Is this washer ok? bad.png")]})
    tool_messages = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert len(tool_messages) == 1
    assert tool_messages[0].artifact.verdict == "anomalous"
    assert result["messages"][-1].content.startswith("The part is defective")


async def test_toolnode_runs_the_tool(inspector: Inspector, images: dict[str, Path]) -> None:
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode

    builder = StateGraph(MessagesState)
    builder.add_node("tools", ToolNode([inspection_tool(inspector=inspector)]))
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    call = _call({"image": str(images["good"]), "references": [str(images["ref0"])]})
    out = await builder.compile().ainvoke({"messages": [AIMessage(content="", tool_calls=[call])]})
    message = out["messages"][-1]
    assert message.artifact.verdict == "normal"


async def test_llamaindex_tool_returns_text_and_image(inspector: Inspector, images: dict[str, Path]) -> None:
    from llama_index.core.base.llms.types import ImageBlock, TextBlock

    tool = inspection_function_tool(inspector=inspector)
    assert tool.metadata.fn_schema is not None
    output = await tool.acall(image=str(images["bad"]), references=[str(images["ref0"])])
    text, image = output.blocks
    assert isinstance(text, TextBlock) and "anomalous" in text.text
    assert isinstance(image, ImageBlock)
    error = await tool.acall(image="/etc/passwd")
    assert "PathNotAllowedError" in error.blocks[0].text


async def test_mcp_server_through_langchain_mcp_adapters(tmp_path: Path, images: dict[str, Path]) -> None:
    from langchain_mcp_adapters.client import MultiServerMCPClient

    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None, context: Any) -> None:
        progress.append((value, total, message))

    from langchain_mcp_adapters.callbacks import Callbacks

    client = MultiServerMCPClient(
        {
            "riad": {
                "command": sys.executable,
                "args": [str(SUPPORT / "fake_mcp_server.py"), str(tmp_path)],
                "transport": "stdio",
            }
        },
        callbacks=Callbacks(on_progress=on_progress),
    )
    tools = await client.get_tools()
    assert [t.name for t in tools] == [
        "inspect_industrial_image",
        "register_product",
        "add_defect_exemplar",
        "list_products",
        "forget_product",
        "triage_images",
    ]
    result = await tools[0].ainvoke(
        _call(
            {
                "image": str(images["bad"]),
                "references": [str(images["ref0"])],
                "options": {"reasoner_when": "always"},
            }
        )
    )
    blocks = result.content
    payload = json.loads(next(b["text"] for b in blocks if b["type"] == "text"))
    assert payload["verdict"] == "anomalous" and payload["regions"]
    # the loop's summary reaches the model, its per-iteration record (most of the characters) does not
    assert payload["trace"]["final_reward"] > 0 and "iterations" not in payload["trace"]
    assert InspectionReport.model_validate(payload).trace is not None
    assert any(b["type"] == "image" for b in blocks)
    assert progress and progress[-1][2] == "done"
    assert any("latent_reasoning" in (m or "") for _, _, m in progress)
    values = [value for value, _, _ in progress]
    assert values == sorted(values)  # progress never goes backwards: stages counted in the graph's order


async def test_mcp_server_over_streamable_http(tmp_path: Path, images: dict[str, Path]) -> None:
    import asyncio
    import socket
    import subprocess

    from langchain_mcp_adapters.client import MultiServerMCPClient

    from riad_agent.serving.service import free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(SUPPORT / "fake_mcp_server.py"), str(tmp_path), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):  # wait for the port to open (bounded)
            with socket.socket() as attempt:
                if attempt.connect_ex(("127.0.0.1", port)) == 0:
                    break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"the MCP server did not open port {port} within 20 s")
        client = MultiServerMCPClient(
            {"riad": {"url": f"http://127.0.0.1:{port}/mcp", "transport": "streamable_http"}}
        )
        tools = await client.get_tools()
        result = await tools[0].ainvoke(
            _call({"image": str(images["good"]), "references": [str(images["ref0"])]})
        )
        payload = json.loads(next(b["text"] for b in result.content if b["type"] == "text"))
        assert payload["verdict"] == "normal"
    finally:
        server.terminate()
        server.wait(timeout=30)
