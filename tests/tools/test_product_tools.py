"""The product memory as agent tools (LangChain, llama-index, MCP): happy paths and every refusal as text."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.messages import ToolMessage
from PIL import Image
from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner

from riad_agent.components import build_components
from riad_agent.data.synthetic import generate_sample
from riad_agent.inspector import Inspector
from riad_agent.knowledge.local_store import LocalStore
from riad_agent.products import ImageEmbedder, ProductFiles, ProductRegistry
from riad_agent.settings import Settings
from riad_agent.tools.langchain import agent_tools, product_tools
from riad_agent.tools.llamaindex import product_function_tools
from riad_agent.tools.mcp_server import build_mcp_server

SIZE = 96


@pytest.fixture(scope="module")
def embedder() -> ImageEmbedder:
    return ImageEmbedder()


@pytest.fixture
def shop(tmp_path: Path, embedder: ImageEmbedder) -> Iterator[Inspector]:
    """An inspector on fake expert, knowledge and reasoner, with a real registry on an embedded store."""
    registry = ProductRegistry(LocalStore(tmp_path / "qdrant"), ProductFiles(tmp_path / "products"), embedder)
    settings = Settings(data_dir=tmp_path / "data", allowed_roots=[tmp_path])
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=FakeExpert(), reasoner=FakeReasoner(), products=registry
    )
    yield Inspector(components=components)
    registry.source.close()


@pytest.fixture
def parts(tmp_path: Path) -> dict[str, Any]:
    """Three good washers, a scratched one with its mask, and a mask of the wrong size (paths)."""
    good = []
    for seed in range(3):
        path = tmp_path / "good" / f"good{seed}.png"
        path.parent.mkdir(exist_ok=True)
        generate_sample("synthetic/washer", None, seed, SIZE).image.save(path)
        good.append(str(path))
    scratch = generate_sample("synthetic/washer", "scratch", 7, SIZE)
    scratch.image.save(tmp_path / "scratch.png")
    Image.fromarray(scratch.mask.astype(np.uint8) * 255).save(tmp_path / "scratch_mask.png")
    Image.new("L", (SIZE // 2, SIZE // 2), 255).save(tmp_path / "small_mask.png")
    query = tmp_path / "query.png"
    generate_sample("synthetic/washer", "hole", 40, SIZE).image.save(query)
    return {
        "good": good,
        "scratch": str(tmp_path / "scratch.png"),
        "mask": str(tmp_path / "scratch_mask.png"),
        "small_mask": str(tmp_path / "small_mask.png"),
        "query": str(query),
    }


def _data_uri(path: str) -> str:
    buffer = io.BytesIO()
    Image.open(path).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "args": args, "id": "call-1", "type": "tool_call"}


async def test_langchain_product_tools_teach_a_product_the_inspection_then_uses(
    shop: Inspector, parts: dict[str, Any]
) -> None:
    tools = {tool.name: tool for tool in agent_tools(inspector=shop)}
    assert set(tools) == {
        "inspect_industrial_image",
        "register_product",
        "add_defect_exemplar",
        "list_products",
        "forget_product",
        "triage_images",
    }
    first = await tools["register_product"].ainvoke(
        _call(
            "register_product",
            {"name": "Washer", "images": parts["good"][:2], "knowledge": "washer", "pose": "free"},
        )
    )
    assert first.status == "success", first.content
    assert "registered washer: 2 references, pose free, knowledge synthetic/washer" in first.content
    assert "misplaced" not in first.content  # the placement note is for fixed poses only
    more = tools["register_product"].invoke({"name": "washer", "images": parts["good"]})  # sync, extends
    assert more.startswith("extended washer with 1 new references")
    masked = await tools["add_defect_exemplar"].ainvoke(
        _call(
            "add_defect_exemplar",
            {"name": "washer", "defect_type": "Scratch", "image": parts["scratch"], "mask": parts["mask"]},
        )
    )
    assert "stored a scratch exemplar of washer" in masked.content and "(from the mask)" in masked.content
    found = await tools["add_defect_exemplar"].ainvoke(
        _call("add_defect_exemplar", {"name": "washer", "defect_type": "hole", "image": parts["query"]})
    )
    assert "(found by the vision expert)" in found.content, found.content
    listed = await tools["list_products"].ainvoke(_call("list_products", {}))
    assert listed.content == (
        "washer: 3 references, pose free, knowledge synthetic/washer, defect exemplars hole (1), scratch (1)"
    )

    # the inspection tool on the same inspector: the category alone brings the stored references
    message = await tools["inspect_industrial_image"].ainvoke(
        _call(
            "inspect_industrial_image",
            {"image": parts["query"], "category": "washer", "options": {"use_reasoner": False}},
        )
    )
    report = message.artifact
    assert report.category == "washer" and "no_references" not in report.degraded
    assert report.verdict != "uncertain"
    # a folder triaged by the same product's name: the reply says which product judged it
    batch = await tools["triage_images"].ainvoke(
        _call("triage_images", {"folder": str(Path(parts["good"][0]).parent), "category": "Washer"})
    )
    assert batch.content.startswith(f"triaged 3 images of {Path(parts['good'][0]).parent} (product washer): ")

    gone = await tools["forget_product"].ainvoke(
        _call("forget_product", {"name": "washer", "defect_type": "hole"})
    )
    assert gone.content.startswith("forgot the hole exemplars of washer (1)")
    await tools["forget_product"].ainvoke(_call("forget_product", {"name": "washer"}))
    empty = await tools["list_products"].ainvoke(_call("list_products", {}))
    assert empty.content.startswith("no products registered yet")


REFUSALS: dict[str, tuple[str, dict[str, Any], str]] = {
    # case: (tool, arguments with {placeholders}, what the error text says)
    "missing file": ("register_product", {"name": "w", "images": ["{tmp}/nope.png"]}, "ImageNotFoundError"),
    "outside roots": ("register_product", {"name": "w", "images": ["/etc/hostname"]}, "PathNotAllowedError"),
    "empty list": ("register_product", {"name": "w", "images": []}, "InvalidRequestError: invalid request field images"),
    "201 images": ("register_product", {"name": "w", "images": ["{good}"] * 201}, "field images: List should have at most 200"),
    "bad pose": ("register_product", {"name": "w", "images": ["{good}"], "pose": "upright"}, "field pose"),
    "bad name": ("register_product", {"name": "../etc", "images": ["{good}"]}, "InvalidRequestError: product name"),
    "knowledge typo": ("register_product", {"name": "w", "images": ["{good}"], "knowledge": "wahser"}, "UnknownCategoryError"),
    "unknown product": ("add_defect_exemplar", {"name": "bolt", "defect_type": "scratch", "image": "{good}"}, "UnknownProductError: no product named 'bolt'"),
    "bad mask size": ("add_defect_exemplar", {"name": "washer", "defect_type": "scratch", "image": "{scratch}", "mask": "{small_mask}"}, "InvalidImageError: the mask is 48x48 px"),
    "bad defect type": ("add_defect_exemplar", {"name": "washer", "defect_type": "a/b", "image": "{scratch}"}, "InvalidRequestError: defect type"),
    "forget unknown": ("forget_product", {"name": "bolt"}, "UnknownProductError"),
    "forget unknown type": ("forget_product", {"name": "washer", "defect_type": "dent"}, "has no 'dent' exemplars"),
    "changed pose": ("register_product", {"name": "washer", "images": ["{good}"], "pose": "fixed"}, "ProductExistsError"),
    "extra field": ("register_product", {"name": "washer", "images": ["{good}"], "verbose": True}, "field verbose: Extra inputs are not permitted"),
}  # fmt: skip


def _filled(value: Any, places: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**places)
    if isinstance(value, list):
        return [_filled(item, places) for item in value]
    if isinstance(value, dict):
        return {k: _filled(v, places) for k, v in value.items()}
    return value


def _places(tmp_path: Path, parts: dict[str, Any]) -> dict[str, str]:
    return {
        "tmp": str(tmp_path),
        "good": parts["good"][0],
        "scratch": parts["scratch"],
        "small_mask": parts["small_mask"],
    }


async def test_langchain_product_tools_return_every_refusal_as_error_text(
    shop: Inspector, parts: dict[str, Any], tmp_path: Path
) -> None:
    tools = {tool.name: tool for tool in product_tools(inspector=shop)}
    tools["register_product"].invoke({"name": "washer", "images": parts["good"][:1], "pose": "free"})
    places = _places(tmp_path, parts)
    for case, (name, arguments, expected) in REFUSALS.items():
        message = await tools[name].ainvoke(_call(name, _filled(arguments, places)))
        assert isinstance(message, ToolMessage), case
        assert message.status == "error" and expected in message.content, (case, message.content)
        assert "\n" not in message.content, case
    # nothing was written by a refusal
    listed = tools["list_products"].invoke({})
    assert listed == "washer: 1 references, pose free, knowledge none, defect exemplars none"


async def test_llamaindex_product_tools_take_data_uris_and_refuse_as_text(
    shop: Inspector, parts: dict[str, Any], tmp_path: Path
) -> None:
    tools = {tool.metadata.name: tool for tool in product_function_tools(inspector=shop)}
    registered = await tools["register_product"].acall(
        name="washer", images=[_data_uri(path) for path in parts["good"]]
    )
    assert "registered washer: 3 references" in str(registered.raw_output)
    labelled = tools["add_defect_exemplar"].call(
        name="washer", defect_type="scratch", image=parts["scratch"], mask=_data_uri(parts["mask"])
    )
    assert "stored a scratch exemplar" in str(labelled.raw_output)
    assert "scratch (1)" in str(tools["list_products"].call().raw_output)
    places = _places(tmp_path, parts)
    for case in ("outside roots", "bad pose", "unknown product", "bad mask size", "extra field"):
        name, arguments, expected = REFUSALS[case]
        output = await tools[name].acall(**_filled(arguments, places))
        text = str(output.raw_output)
        assert text.startswith("Error: ") and expected in text, (case, text)


async def test_mcp_product_tools_share_the_inspection_tools_registry(
    shop: Inspector, parts: dict[str, Any], tmp_path: Path
) -> None:
    from mcp.shared.memory import create_connected_server_and_client_session

    server = build_mcp_server(Settings(data_dir=tmp_path / "data"), shop)
    async with create_connected_server_and_client_session(server) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        assert {"register_product", "add_defect_exemplar", "list_products", "forget_product"} <= listed
        result = await client.call_tool("register_product", {"name": "washer", "images": parts["good"]})
        assert not result.isError and "registered washer" in result.content[0].text  # type: ignore[union-attr]
        result = await client.call_tool(
            "add_defect_exemplar",
            {"name": "washer", "defect_type": "scratch", "image": parts["scratch"], "mask": parts["mask"]},
        )
        assert not result.isError, result.content
        inspected = await client.call_tool(
            "inspect_industrial_image",
            {"image": parts["query"], "category": "washer", "options": {"use_reasoner": False}},
        )
        assert not inspected.isError
        assert '"no_references"' not in inspected.content[0].text  # type: ignore[union-attr]
        places = _places(tmp_path, parts)
        for case, (name, arguments, expected) in REFUSALS.items():
            result = await client.call_tool(name, _filled(arguments, places))
            text = result.content[0].text  # type: ignore[union-attr]
            if case == "extra field":  # MCP passes only the declared arguments
                assert not result.isError and text.startswith("extended washer with 0 new"), text
                continue
            assert result.isError and expected in text and "\n" not in text, (case, text)
        result = await client.call_tool("forget_product", {"name": "washer"})
        assert not result.isError
        listed_text = (await client.call_tool("list_products", {})).content[0].text  # type: ignore[union-attr]
        assert listed_text.startswith("no products registered yet")
