"""Triage's fast path: the graph's verdicts (reasoner off) at a fraction of the cost, the record contract,
the reasoner modes and the table exports."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langgraph.graph.state import CompiledStateGraph
from PIL import Image
from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner

from riad_agent.components import Components, build_components
from riad_agent.data.synthetic import generate_sample
from riad_agent.errors import UnknownProductError
from riad_agent.graphs.inspection import build_inspection_graph, run_inspection
from riad_agent.graphs.triage import TriageJob, build_triage_graph, run_triage
from riad_agent.graphs.triage_export import export_table, flat_row
from riad_agent.graphs.triage_fast import FastTriage
from riad_agent.knowledge.local_store import LocalStore
from riad_agent.products import ImageEmbedder, ProductFiles, ProductRegistry
from riad_agent.schemas import InspectionOptions, InspectionReport, InspectionRequest
from riad_agent.settings import Settings

SIZE = 96
# FakeExpert: score = sigmoid((max |query - mean reference| - 40) / 5): a patch brighter by 40 is the edge
DELTAS = {"clean": 0, "faint": 20, "edge": 40, "edge_plus": 41, "bright": 80}


def _patched(delta: int) -> Image.Image:
    pixels = np.full((64, 64, 3), 90, dtype=np.uint8)
    pixels[20:30, 24:40] += np.uint8(delta)
    return Image.fromarray(pixels)


def _shades(root: Path, reference: Path) -> tuple[dict[str, Path], Path]:
    """Images whose FakeExpert scores span normal, uncertain and anomalous, and their reference."""
    root.mkdir(parents=True, exist_ok=True)
    _patched(0).save(reference)
    paths = {}
    for name, delta in DELTAS.items():
        paths[name] = root / f"{name}.png"
        _patched(delta).save(paths[name])
    return paths, reference


def _fields(report: InspectionReport) -> tuple[object, ...]:
    return (
        report.verdict,
        round(report.anomaly_score, 6),
        [(r.x0, r.y0, r.x1, r.y1) for r in report.regions],
        report.category,
        report.category_guessed,
        report.defect_type,
        report.pose,
    )


async def _both(
    components: Components, image: Path, category: str | None, references: list[str | bytes]
) -> tuple[InspectionReport, InspectionReport]:
    """(graph's report with the reasoner off, fast path's report) of one image; the expert was given the
    same pose by both."""
    options = InspectionOptions(use_reasoner=False)
    graph = build_inspection_graph(components=components, checkpointer=False)
    request = InspectionRequest(image=str(image), category=category, references=references, options=options)
    expert = components.expert.get()
    assert isinstance(expert, FakeExpert)
    expert.last_pose = "unset"
    slow = await run_inspection(graph, request)
    pose = expert.last_pose
    expert.last_pose = "unset"
    fast = FastTriage(components, category=category, references=references, options=options)
    report = fast.inspect(fast.decode(str(image))).report
    assert expert.last_pose == pose
    return slow, report


async def test_fast_verdicts_equal_the_graphs_with_references(tmp_path: Path) -> None:
    paths, reference = _shades(tmp_path / "images", tmp_path / "reference.png")
    components = build_components(
        Settings(data_dir=tmp_path / "data"),
        knowledge=FakeKnowledge(),
        expert=FakeExpert(),
        reasoner=FakeReasoner(),
    )
    verdicts: dict[str, str] = {}
    for name, path in paths.items():
        slow, fast = await _both(components, path, None, [str(reference)])
        assert _fields(fast) == _fields(slow), name
        verdicts[name] = fast.verdict
    assert verdicts == {
        "clean": "normal",
        "faint": "normal",
        "edge": "uncertain",
        "edge_plus": "uncertain",
        "bright": "anomalous",
    }


@pytest.fixture(scope="module")
def embedder() -> ImageEmbedder:
    return ImageEmbedder()


async def test_fast_path_recognises_and_types_as_the_graph_does(
    tmp_path: Path, embedder: ImageEmbedder
) -> None:
    registry = ProductRegistry(LocalStore(tmp_path / "qdrant"), ProductFiles(tmp_path / "products"), embedder)
    washers = [generate_sample("synthetic/washer", None, seed, SIZE).image for seed in range(3)]
    registry.add("washer", washers, knowledge="synthetic/washer", pose="free")
    for seed in range(2):
        for kind in ("hole", "colour"):
            sample = generate_sample("synthetic/washer", kind, 300 + seed, SIZE)
            registry.add_defect("washer", kind, sample.image, mask=sample.mask)
    components = build_components(
        Settings(data_dir=tmp_path / "data"),
        knowledge=FakeKnowledge(),
        expert=FakeExpert(),
        reasoner=FakeReasoner(),
        products=registry,
    )
    queries = {
        "washer-colour": generate_sample("synthetic/washer", "colour", 40, SIZE).image,
        "washer-good": generate_sample("synthetic/washer", None, 41, SIZE).image,
        "tile": generate_sample("synthetic/tile", None, 42, SIZE).image,
    }
    seen: dict[tuple[str, str | None], InspectionReport] = {}
    for name, image in queries.items():
        path = tmp_path / f"{name}.png"
        image.save(path)
        for category in (None, "washer"):
            slow, fast = await _both(components, path, category, [])
            assert _fields(fast) == _fields(slow), (name, category)
            seen[(name, category)] = fast
    assert seen[("washer-colour", None)].category == "washer"
    assert seen[("washer-colour", None)].category_guessed
    assert "unknown_product" in seen[("tile", None)].degraded
    assert "labelled" in seen[("washer-colour", "washer")].explanation
    assert seen[("washer-colour", "washer")].pose == "free (registered product)"
    # a typo of a registered name, without references: the same typed error on both paths
    registry.add("solar-mono", washers)
    path = tmp_path / "tile.png"
    graph = build_inspection_graph(components=components, checkpointer=False)
    request = InspectionRequest(image=str(path), category="solar-mon", options=InspectionOptions())
    with pytest.raises(UnknownProductError, match="'solar-mono'"):
        await run_inspection(graph, request)
    fast = FastTriage(components, category="solar-mon", references=[], options=InspectionOptions())
    with pytest.raises(UnknownProductError, match="'solar-mono'"):
        fast.inspect(fast.decode(str(path)))


def _triage(
    tmp_path: Path, reasoner: FakeReasoner
) -> tuple[CompiledStateGraph[Any, Any, Any, Any], Path, Path]:
    images = tmp_path / "images"
    _, reference = _shades(images / "a", tmp_path / "reference.png")
    (images / "b").mkdir()
    _patched(80).save(images / "b" / "clean.png")  # same name as a/clean.png, another folder
    components = build_components(
        Settings(data_dir=tmp_path / "data"),
        knowledge=FakeKnowledge(),
        expert=FakeExpert(),
        reasoner=reasoner,
    )
    return build_triage_graph(components=components), images, reference


def _lines(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize(("mode", "reasoned"), [("never", 0), ("uncertain", 2), ("always", 6)])
async def test_the_reasoner_runs_for_the_images_the_mode_names(
    tmp_path: Path, mode: str, reasoned: int
) -> None:
    reasoner = FakeReasoner()
    graph, images, reference = _triage(tmp_path, reasoner)
    out = tmp_path / "results.jsonl"
    job = TriageJob(
        images=images, out=out, references=[reference], reasoner=mode, options={"latent_steps": 1}
    )
    summary = await run_triage(job, graph)
    records = {str(r["path"]): r for r in _lines(out)}
    assert len(reasoner.calls) == reasoned
    assert sorted(records) == sorted(
        ["a/clean.png", "a/faint.png", "a/edge.png", "a/edge_plus.png", "a/bright.png", "b/clean.png"]
    )
    assert summary.uncertain == 2 and summary.anomalous == 2 and summary.normal == 2
    for record in records.values():
        assert record["reasoner"] is (record["report"] is not None)
        assert (record["report"] is not None) is (
            mode == "always" or (record["verdict"] == "uncertain" and mode != "never")
        )
    edge = records["a/edge.png"]
    assert edge["verdict"] == "uncertain" and "within 0.05 of the edge of normal" in str(edge["reason"])
    bright = records["b/clean.png"]
    assert bright["verdict"] == "anomalous" and bright["reason"] is None and bright["size"] == [64, 64]
    assert bright["regions"] == [{"box": [24, 20, 40, 30], "score": bright["score"]}]
    assert bright["threshold"] == 0.5 and bright["image"] == str((images / "b" / "clean.png").resolve())


async def test_the_no_reasoner_option_means_never(tmp_path: Path) -> None:
    reasoner = FakeReasoner()
    graph, images, reference = _triage(tmp_path, reasoner)
    job = TriageJob(
        images=images, out=tmp_path / "r.jsonl", references=[reference], options={"use_reasoner": False}
    )
    await run_triage(job, graph)
    assert reasoner.calls == []


async def test_tables_have_one_row_per_image_old_lines_included(tmp_path: Path) -> None:
    graph, images, reference = _triage(tmp_path, FakeReasoner())
    out = tmp_path / "results.jsonl"
    await run_triage(TriageJob(images=images, out=out, references=[reference], reasoner="never"), graph)
    old = {  # a line of an older version: the report only
        "image": "/old/x.png",
        "elapsed_ms": 1.0,
        "heatmap": None,
        "error": None,
        "report": {
            "verdict": "anomalous",
            "anomaly_score": 0.9,
            "category": "washer",
            "category_guessed": False,
            "defect_type": "hole",
            "image_size": [100, 80],
            "regions": [
                {"x0": 1, "y0": 2, "x1": 5, "y1": 6, "score": 0.7, "area": 9},
                {"x0": 10, "y0": 20, "x1": 50, "y1": 60, "score": 0.9, "area": 99},
            ],
        },
    }
    with out.open("a") as handle:
        handle.write(json.dumps(old) + "\n")
    old_row = flat_row(old)
    assert old_row["verdict"] == "anomalous" and old_row["top_box"] == "10,20,50,60"
    assert old_row["width"] == 100 and old_row["defect_type"] == "hole"

    table = export_table(out, "csv")
    assert table == tmp_path / "results.csv"
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 7 and {row["path"] for row in rows} >= {"a/clean.png", "b/clean.png"}
    clean = next(row for row in rows if row["path"] == "b/clean.png")
    assert clean["top_box"] == "24,20,40,30"
    # what each verdict rests on: one reference here; an older line does not say
    assert clean["references"] == "1" and old_row["references"] is None
    assert all(line["references"] == 1 for line in _lines(out)[:-1])

    pq = pytest.importorskip("pyarrow.parquet")
    frame = pq.read_table(export_table(out, "parquet")).to_pylist()
    assert len(frame) == 7 and frame[-1]["verdict"] == "anomalous"
