"""``triage_images``: a folder triaged by an agent, its reply, its files and its refusals, on every surface."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner, part_image

from riad_agent.components import build_components
from riad_agent.inspector import Inspector
from riad_agent.settings import Settings
from riad_agent.tools.langchain import agent_tools, triage_tool
from riad_agent.tools.llamaindex import agent_function_tools, triage_function_tool
from riad_agent.tools.mcp_server import build_mcp_server
from riad_agent.tools.triage import TRIAGE


@pytest.fixture
def shop(tmp_path: Path) -> Inspector:
    settings = Settings(data_dir=tmp_path / "data", allowed_roots=[tmp_path / "parts"])
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=FakeExpert(), reasoner=FakeReasoner()
    )
    return Inspector(components=components)


@pytest.fixture
def batch(tmp_path: Path) -> dict[str, Any]:
    """7 parts, p1-p6 defective at the same place (a batch pattern), p0 good; one normal reference."""
    folder = tmp_path / "parts" / "line"
    folder.mkdir(parents=True)
    for index in range(7):
        part_image(index > 0, seed=index).save(folder / f"p{index}.png")
    reference = tmp_path / "parts" / "ref.png"
    part_image(False, seed=99).save(reference)
    return {"folder": str(folder), "references": [str(reference)]}


async def test_a_folder_is_triaged_and_the_reply_names_what_to_act_on(
    shop: Inspector, batch: dict[str, Any], tmp_path: Path
) -> None:
    tool = triage_tool(inspector=shop)
    # a call inspects at most `limit` new images and says how to go on
    part = await tool.ainvoke({**batch, "reasoner": "never", "limit": 3})
    out = Path(part.splitlines()[0].split("Results: ")[1].split(";")[0])
    assert out.parent == tmp_path / "data" / "triage" and out.name.startswith("line-")
    assert part.startswith(f"triaged 3 images of {batch['folder']}: ")
    assert f"4 images of the folder are not inspected yet: call again with out={str(out)!r} to go on." in part
    text = await tool.ainvoke({**batch, "out": str(out), "reasoner": "never", "listed": 4})
    first = text.splitlines()[0]
    assert first.startswith(
        f"triaged 7 images of {batch['folder']}: 6 anomalous, 0 uncertain, 1 normal, 0 errors, "
        "3 already in the results file"
    )
    assert "not inspected yet" not in text
    # a second default file, even within the same second; a knowledge category is named as resolved
    named = await tool.ainvoke({**batch, "category": "WASHER", "reasoner": "never", "listed": 0})
    assert named.startswith(f"triaged 7 images of {batch['folder']} (category synthetic/washer): ")
    assert "already in the results file" not in named.splitlines()[0]
    assert len(list((tmp_path / "data" / "triage").glob("line-*.jsonl"))) == 2
    assert out.is_file() and out.with_suffix(".html").is_file()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["path"] for r in records) == [f"p{i}.png" for i in range(7)]
    # the batch's pattern reaches the model, and the worst images by name, with where they peak
    assert "Caution: 6 of the 6 anomalous images peak at the same place" in text
    assert "Anomalous, worst first:" in text and "- and 2 more (see the results file)" in text
    listed = [line for line in text.splitlines() if line.startswith("- p")]
    assert len(listed) == 4 and all("x " in line and ", y " in line for line in listed)
    assert "p0.png" not in text
    # the same file again resumes: nothing is inspected twice
    again = await tool.ainvoke({**batch, "out": str(out), "reasoner": "never"})
    assert "7 already in the results file" in again.splitlines()[0]


async def test_a_triage_outside_the_allowed_roots_or_with_bad_arguments_is_one_typed_line(
    shop: Inspector, batch: dict[str, Any], tmp_path: Path
) -> None:
    tool = triage_function_tool(inspector=shop)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    refusals = {
        "folder outside": ({"folder": str(outside)}, "PathNotAllowedError: folder"),
        "results outside": ({**batch, "out": str(outside / "r.jsonl")}, "PathNotAllowedError: results file"),
        "not jsonl": ({**batch, "out": str(tmp_path / "parts" / "r.csv")}, "OutputWriteError"),
        "reference outside": (
            {"folder": batch["folder"], "references": [str(outside / "ref.png")]},
            "PathNotAllowedError: reference image",
        ),
        "no images": ({"folder": str(tmp_path / "parts" / "empty")}, "Error: "),
        "unknown argument": ({**batch, "colour": "red"}, "Error: "),
        "bad mode": ({**batch, "reasoner": "sometimes"}, "Error: "),
        "mistyped category": ({**batch, "category": "hazlenut"}, "UnknownCategoryError"),
    }
    (tmp_path / "parts" / "empty").mkdir()
    for case, (arguments, expected) in refusals.items():
        output = await tool.acall(**arguments)
        text = str(output.content)
        assert text.startswith("Error: ") and expected in text and "\n" not in text, (case, text)
    assert not (outside / "r.jsonl").exists()
    assert not list((tmp_path / "data" / "triage").glob("*.jsonl*"))  # a failed call leaves no empty file


async def test_every_surface_offers_the_triage_tool_and_mcp_reports_progress(
    shop: Inspector, batch: dict[str, Any], tmp_path: Path
) -> None:
    from mcp.shared.memory import create_connected_server_and_client_session

    assert TRIAGE in {tool.name for tool in agent_tools(inspector=shop)}
    assert TRIAGE in {tool.metadata.name for tool in agent_function_tools(inspector=shop)}
    events: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, total, message))

    server = build_mcp_server(Settings(data_dir=tmp_path / "data"), shop)
    async with create_connected_server_and_client_session(server) as client:
        assert TRIAGE in {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool(TRIAGE, {**batch, "reasoner": "never"}, progress_callback=on_progress)
        assert not result.isError
        assert "6 anomalous" in result.content[0].text  # type: ignore[union-attr]
        # MCP passes `limit` too: a call stops there and says how to go on
        partial = await client.call_tool(
            TRIAGE, {**batch, "out": str(tmp_path / "parts" / "part.jsonl"), "reasoner": "never", "limit": 2}
        )
        assert "5 images of the folder are not inspected yet" in partial.content[0].text  # type: ignore[union-attr]
        refused = await client.call_tool(TRIAGE, {"folder": str(tmp_path)})
        assert refused.isError and "PathNotAllowedError" in refused.content[0].text  # type: ignore[union-attr]
    assert [int(done) for done, _, _ in events] == list(range(1, 8)) and events[-1][1] == 7
