"""What every tool surface owes a model: refusals as error text, small heatmaps, honest progress, sync calls."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.messages import ToolMessage
from PIL import Image
from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner

from riad_agent.components import Lazy, build_components
from riad_agent.errors import BackendUnavailableError
from riad_agent.inspector import Inspector
from riad_agent.protocols import AnomalyMap, KnowledgeBase, Pose
from riad_agent.schemas import InspectionReport, InspectionRequest
from riad_agent.settings import Settings
from riad_agent.tools.common import SMALL_HEATMAP_BYTES, report_text
from riad_agent.tools.langchain import inspection_tool
from riad_agent.tools.llamaindex import inspection_function_tool
from riad_agent.tools.mcp_server import STAGES, build_mcp_server

TESTS = Path(__file__).resolve().parents[1]


def _call(args: dict[str, Any]) -> dict[str, Any]:
    return {"name": "inspect_industrial_image", "args": args, "id": "call-1", "type": "tool_call"}


def _options(count: int) -> dict[str, str]:
    return {chr(ord("A") + i): f"option {i}" for i in range(count)}


def _refusals(image: str) -> dict[str, dict[str, Any]]:
    """Arguments the request schema refuses, each the way a model might send them."""
    return {
        "no options": {"image": image, "question": {"text": "Defect?", "options": {}}},
        "30 options": {
            "image": image,
            "question": {"text": "Defect?", "options": {str(i): "x" for i in range(30)}},
        },
        "empty question": {"image": image, "question": {"text": "", "options": _options(2)}},
        "1 MB question": {"image": image, "question": {"text": "x" * 1_000_000, "options": _options(2)}},
        "image is a number": {"image": 123},
        "extra field": {"image": image, "colour": "red"},
        "201 references": {"image": image, "references": [image] * 201},
        "negative steps": {"image": image, "options": {"latent_steps": -1}},
    }


@pytest.mark.parametrize("case", list(_refusals("x.png")))
async def test_langchain_tool_returns_refused_arguments_as_error_text(
    inspector: Inspector, images: dict[str, Path], case: str
) -> None:
    tool = inspection_tool(inspector=inspector)
    arguments = _refusals(str(images["good"]))[case]
    message = await tool.ainvoke(_call(arguments))  # no exception: the model reads the refusal
    assert isinstance(message, ToolMessage) and message.status == "error"
    assert message.content.startswith("InvalidRequestError: invalid request field"), message.content
    sync = tool.invoke(_call(arguments))
    assert sync.status == "error" and sync.content == message.content


def test_langchain_tool_runs_with_sync_invoke(inspector: Inspector, images: dict[str, Path]) -> None:
    tool = inspection_tool(inspector=inspector)
    message = tool.invoke(_call({"image": str(images["bad"]), "references": [str(images["ref0"])]}))
    assert isinstance(message.artifact, InspectionReport) and message.artifact.verdict == "anomalous"
    error = tool.invoke(_call({"image": "/etc/passwd"}))
    assert error.status == "error" and error.content.startswith("PathNotAllowedError")


async def test_langchain_tool_sync_invoke_inside_a_running_loop(
    inspector: Inspector, images: dict[str, Path]
) -> None:
    tool = inspection_tool(inspector=inspector)
    message = tool.invoke(_call({"image": str(images["bad"]), "references": [str(images["ref0"])]}))
    assert message.artifact.verdict == "anomalous"


class BigHeatmapExpert(FakeExpert):
    """The fake expert with a full-size heatmap of noise: about 3 MB of PNG, like a real overlay."""

    def analyse(
        self, image: Image.Image, references: Any, *, pose: Pose | None = None, pose_source: str = "knowledge"
    ) -> AnomalyMap:
        found = super().analyse(image, references, pose=pose, pose_source=pose_source)
        noise = np.random.default_rng(0).integers(0, 256, size=(1024, 1024, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noise).save(buffer, format="PNG")
        found.heatmap_png = buffer.getvalue()
        return found


@pytest.fixture
def big_heatmap_inspector(tmp_path: Path) -> Inspector:
    settings = Settings(data_dir=tmp_path / "data", allowed_roots=[tmp_path])
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=BigHeatmapExpert(), reasoner=FakeReasoner()
    )
    return Inspector(components=components)


async def test_tools_send_a_small_heatmap_and_keep_the_full_one_in_the_artifact(
    big_heatmap_inspector: Inspector, images: dict[str, Path]
) -> None:
    import base64

    arguments = {"image": str(images["bad"]), "references": [str(images["ref0"])]}
    message = await inspection_tool(inspector=big_heatmap_inspector).ainvoke(_call(arguments))
    image_block = message.content[1]
    small = base64.b64decode(image_block["base64"])
    assert len(small) <= SMALL_HEATMAP_BYTES and Image.open(io.BytesIO(small)).format == "PNG"
    assert len(message.artifact.heatmap_png) > 1_000_000  # the report keeps the full-size one
    full = await inspection_tool(inspector=big_heatmap_inspector, full_heatmap=True).ainvoke(_call(arguments))
    assert base64.b64decode(full.content[1]["base64"]) == message.artifact.heatmap_png
    output = await inspection_function_tool(inspector=big_heatmap_inspector).acall(**arguments)
    assert len(base64.b64decode(output.blocks[1].image)) <= SMALL_HEATMAP_BYTES


class UnreachableKnowledge:
    def get(self) -> KnowledgeBase:
        raise BackendUnavailableError("Qdrant storage is locked by another process")


async def test_tool_text_names_every_degraded_part(tmp_path: Path, images: dict[str, Path]) -> None:
    settings = Settings(data_dir=tmp_path / "data", allowed_roots=[tmp_path])
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=FakeExpert(), reasoner=FakeReasoner()
    )
    components.knowledge = Lazy(UnreachableKnowledge().get, "knowledge base")
    components.reasoner = Lazy.of(FakeReasoner(fail=True), "reasoner")
    report = await Inspector(components=components).ainspect(
        InspectionRequest(
            image=str(images["good"]),
            category="washer",
            references=[str(images["ref0"])],
            options={"reasoner_when": "always"},
        )
    )
    assert report.degraded == ["knowledge_unavailable", "reasoner_unavailable"]
    text = report_text(report)
    assert "degraded: knowledge_unavailable: the knowledge base could not be reached" in text
    assert "degraded: reasoner_unavailable: the reasoner could not be built or reached" in text


class OutOfOrderInspector(Inspector):
    """Streams the stages as a late reasoner event would: one latent_reasoning event after explain."""

    def __init__(self, report: InspectionReport) -> None:
        self.report = report

    async def astream(self, request: Any) -> AsyncGenerator[dict[str, Any] | InspectionReport, None]:
        for stage in ("load_inputs", "resolve_category", "expert_analysis", "retrieve_knowledge"):
            yield {"stage": stage}
        yield {"stage": "latent_reasoning", "iteration": 0}
        yield {"stage": "explain"}
        yield {"stage": "latent_reasoning", "iteration": 1}  # late: the reasoner timed out meanwhile
        yield {"stage": "something_new"}
        yield self.report


async def test_mcp_progress_never_goes_backwards(tmp_path: Path) -> None:
    from mcp.shared.memory import create_connected_server_and_client_session

    report = InspectionReport(verdict="normal", anomaly_score=0.1, image_size=(8, 8))
    server = build_mcp_server(Settings(data_dir=tmp_path / "data"), OutOfOrderInspector(report))
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with create_connected_server_and_client_session(server) as client:
        result = await client.call_tool(
            "inspect_industrial_image", {"image": "x.png"}, progress_callback=on_progress
        )
    assert not result.isError
    assert progress == sorted(progress) and progress[-1] == len(STAGES), progress


async def test_mcp_refusals_are_one_typed_line(
    tmp_path: Path, images: dict[str, Path], inspector: Inspector
) -> None:
    from mcp.shared.memory import create_connected_server_and_client_session

    server = build_mcp_server(Settings(data_dir=tmp_path / "data"), inspector)
    async with create_connected_server_and_client_session(server) as client:
        for case, arguments in _refusals(str(images["good"])).items():
            result = await client.call_tool("inspect_industrial_image", arguments)
            text = result.content[0].text  # type: ignore[union-attr]
            if case == "extra field":  # MCP passes only the declared arguments
                assert not result.isError
                continue
            assert result.isError and "InvalidRequestError: invalid request field" in text, (case, text)
        long_name = await client.call_tool("inspect_industrial_image", {"image": "x" * 700 + "!"})
        assert long_name.isError
        assert "InvalidImageError: the image reference" in long_name.content[0].text  # type: ignore[union-attr]


def test_llamaindex_sync_call_leaves_no_pending_task(tmp_path: Path, images: dict[str, Path]) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.path.insert(0, {str(TESTS)!r})
        from pathlib import Path
        from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner
        from riad_agent.components import build_components
        from riad_agent.inspector import Inspector
        from riad_agent.settings import Settings
        from riad_agent.tools.llamaindex import inspection_function_tool

        root = Path({str(tmp_path)!r})
        settings = Settings(data_dir=root / "data", allowed_roots=[root])
        parts = build_components(settings, knowledge=FakeKnowledge(), expert=FakeExpert(), reasoner=FakeReasoner())
        tool = inspection_function_tool(inspector=Inspector(components=parts))
        args = dict(image={str(images["bad"])!r}, references=[{str(images["ref0"])!r}])
        print(tool.call(**args).blocks[0].text.splitlines()[0])

        async def inside_a_loop():
            print(tool.call(**args).blocks[0].text.splitlines()[0])

        asyncio.run(inside_a_loop())
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("anomalous") == 2, result.stdout
    assert "Task was destroyed" not in result.stderr, result.stderr
    assert "never awaited" not in result.stderr, result.stderr


async def test_inspector_keeps_no_checkpoints(inspector: Inspector, images: dict[str, Path]) -> None:
    request = InspectionRequest(image=str(images["bad"]), references=[str(images["ref0"])])
    for _ in range(3):
        await inspector.ainspect(request)
    saver = inspector.graph.checkpointer
    assert saver is None or not getattr(saver, "storage", None)


async def test_inspector_with_review_deletes_finished_runs(tmp_path: Path, images: dict[str, Path]) -> None:
    settings = Settings(data_dir=tmp_path / "data", allowed_roots=[tmp_path], review_threshold=0.01)
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=FakeExpert(), reasoner=FakeReasoner()
    )
    inspector = Inspector(components=components)
    request = InspectionRequest(image=str(images["bad"]), references=[str(images["ref0"])])
    for _ in range(3):
        assert (await inspector.ainspect(request)).verdict == "anomalous"  # far from 0.5: no review
    saver = inspector.graph.checkpointer
    assert saver is not None and not saver.storage  # type: ignore[attr-defined]
