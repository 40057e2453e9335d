"""A checkpoint of one inspection is small (no pixels in the state) and reads back without serde warnings."""

from __future__ import annotations

import io
import logging
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.event_hooks import SerdeEvent, register_serde_event_listener
from langgraph.types import Command
from PIL import Image
from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner, part_image

from riad_agent.blobs import BlobStore
from riad_agent.components import build_components
from riad_agent.evidence import ExpertFindings
from riad_agent.graphs.checkpoints import open_async_checkpointer, with_project_types
from riad_agent.graphs.heatmap_serde import HeatmapOffloadingSerializer
from riad_agent.graphs.inspection import build_inspection_graph
from riad_agent.schemas import InspectionRequest
from riad_agent.settings import Settings

#: The issue's bound for one inspection with 4 references of 1024 x 1024 (it was 55-65 MB).
MAX_CHECKPOINT_BYTES = 200 * 1024


def _stored_bytes(database: Path) -> int:
    """Bytes of every checkpoint, its metadata and every pending write in the SQLite saver."""
    with sqlite3.connect(database) as connection:
        checkpoints = connection.execute(
            "SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0) FROM checkpoints"
        ).fetchone()[0]
        writes = connection.execute("SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes").fetchone()[0]
    return int(checkpoints) + int(writes)


@pytest.fixture
def large_part(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A defective 1024 x 1024 part and four normal references of the same size."""
    query = tmp_path / "query.png"
    part_image(True, size=(1024, 1024), seed=11).save(query, compress_level=1)
    references = []
    for index in range(4):
        path = tmp_path / f"reference{index}.png"
        part_image(False, size=(1024, 1024), seed=20 + index).save(path, compress_level=1)
        references.append(path)
    return query, references


async def test_sqlite_checkpoint_of_one_inspection_is_small(
    tmp_path: Path, large_part: tuple[Path, list[Path]], caplog: pytest.LogCaptureFixture
) -> None:
    query, references = large_part
    settings = Settings(data_dir=tmp_path / "data", checkpointer="sqlite", review_threshold=0.5)
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=FakeExpert(), reasoner=FakeReasoner()
    )
    request = InspectionRequest(
        image=str(query),
        category="washer",
        references=[str(p) for p in references],
        options={"latent_steps": 3, "reasoner_when": "always"},
    )
    config = {"configurable": {"thread_id": "large"}}
    events: list[SerdeEvent] = []
    unregister = register_serde_event_listener(events.append)
    caplog.set_level(logging.WARNING)
    try:
        async with open_async_checkpointer(settings) as saver:
            graph = build_inspection_graph(components=components, checkpointer=saver)
            state = await graph.ainvoke({"request": request}, config=config)
            assert "__interrupt__" in state  # every node ran, and the review wrote its pending interrupt
        async with open_async_checkpointer(settings) as saver:  # read back by a new graph, then resumed
            graph = build_inspection_graph(components=components, checkpointer=saver)
            state = await graph.ainvoke(Command(resume={"verdict": "anomalous"}), config=config)
            assert state["report"].verdict == "anomalous" and state["report"].trace is not None
            history = [snapshot async for snapshot in graph.aget_state_history(config)]
            assert len(history) >= 8 and history[0].values["report"] == state["report"]
    finally:
        unregister()

    database = settings.data_dir / "checkpoints.sqlite"
    stored = _stored_bytes(database)
    assert stored <= MAX_CHECKPOINT_BYTES, f"{stored} bytes of checkpoints for one inspection"
    assert database.stat().st_size <= MAX_CHECKPOINT_BYTES
    assert events == []  # no type was revived unregistered, none was blocked
    assert not [r for r in caplog.records if "Deserializing unregistered type" in r.getMessage()]


def noise_png() -> bytes:
    """A PNG of about 1.5 MB (noise does not compress), the same each time."""
    noise = np.random.default_rng(0).integers(0, 256, size=(1024, 512, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    return buffer.getvalue()


class NoisyHeatmapExpert(FakeExpert):
    """The fake expert with a full-size heatmap overlay of about 1.5 MB, like the real one at 1024 px."""

    def analyse(
        self, image: Any, references: Any, *, pose: Any = None, pose_source: str = "knowledge"
    ) -> Any:
        found = super().analyse(image, references, pose=pose, pose_source=pose_source)
        found.heatmap_png = noise_png()
        return found


async def test_a_checkpoint_with_a_heatmap_is_small(
    tmp_path: Path, large_part: tuple[Path, list[Path]]
) -> None:
    query, references = large_part
    settings = Settings(data_dir=tmp_path / "data", checkpointer="sqlite")
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=NoisyHeatmapExpert(), reasoner=FakeReasoner()
    )
    request = InspectionRequest(
        image=str(query),
        category="washer",
        references=[str(p) for p in references],
        options={"latent_steps": 3, "return_heatmap": True},
    )
    async with open_async_checkpointer(settings) as saver:
        graph = build_inspection_graph(components=components, checkpointer=saver)
        state = await graph.ainvoke({"request": request}, config={"configurable": {"thread_id": "heat"}})
    assert len(state["report"].heatmap_png) > 1_000_000  # the caller still gets the full heatmap
    stored = _stored_bytes(settings.data_dir / "checkpoints.sqlite")
    assert stored <= MAX_CHECKPOINT_BYTES, f"{stored} bytes of checkpoints for one inspection with a heatmap"


async def test_a_resumed_inspection_gets_its_heatmap_back_from_the_blob_store(
    tmp_path: Path, large_part: tuple[Path, list[Path]], caplog: pytest.LogCaptureFixture
) -> None:
    query, references = large_part
    settings = Settings(data_dir=tmp_path / "data", checkpointer="sqlite", review_threshold=0.5)
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=NoisyHeatmapExpert(), reasoner=FakeReasoner()
    )
    request = InspectionRequest(
        image=str(query),
        category="washer",
        references=[str(p) for p in references],
        options={"return_heatmap": True},
    )
    config = {"configurable": {"thread_id": "resumed"}}
    async with open_async_checkpointer(settings) as saver:
        graph = build_inspection_graph(components=components, checkpointer=saver)
        paused = await graph.ainvoke({"request": request}, config=config)
        assert "__interrupt__" in paused
    async with open_async_checkpointer(settings) as saver:  # the findings come back from the checkpoint only
        graph = build_inspection_graph(components=components, checkpointer=saver)
        state = await graph.ainvoke(Command(resume={"verdict": "anomalous"}), config=config)
        assert state["report"].heatmap_png == noise_png()

        components.blobs.prune(max_bytes=0)  # weeks later: the heatmap was pruned, the checkpoint was not
        caplog.set_level(logging.WARNING)
        snapshot = await graph.aget_state(config)
    report = snapshot.values["report"]
    assert report.heatmap_png is None and report.verdict == "anomalous"
    assert any("heatmap is gone" in r.getMessage() for r in caplog.records)


def test_a_saver_given_twice_offloads_once(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    saver = with_project_types(with_project_types(InMemorySaver(), blobs), blobs)
    assert isinstance(saver.serde, HeatmapOffloadingSerializer)
    assert not isinstance(saver.serde.inner, HeatmapOffloadingSerializer)
    findings = ExpertFindings.of(FakeExpert().analyse(part_image(True), [part_image(False)]), heatmap=True)
    kind, data = saver.serde.dumps_typed({"anomaly": findings})
    assert findings.heatmap_png is not None and findings.heatmap_png not in data
    assert saver.serde.loads_typed((kind, data)) == {"anomaly": findings}
