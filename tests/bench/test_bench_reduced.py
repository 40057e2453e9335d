"""The reduced ``riad bench`` end to end: JSON keys, sane numbers and the chart PNG."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from riad_agent.bench.stats import summarise
from riad_agent.commands.bench import bench


def test_summarise_median_and_p95() -> None:
    timing = summarise([float(v) for v in range(1, 21)])  # 1..20
    assert timing.median_ms == 10.5
    assert timing.p95_ms == 19.05  # linear interpolation at 0.95 * 19 = 18.05 -> 19 + 0.05
    assert (timing.min_ms, timing.max_ms, timing.n) == (1.0, 20.0, 20)


def test_reduced_bench_writes_json_and_chart(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(bench)
    chart = tmp_path / "bench.png"
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["--reduced", "--json", "--chart", str(chart), "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == json.loads(out.read_text())
    assert data["vlm"] == "tiny-random-qwen2-vl"
    assert data["embedder"] == "hashing"
    stages = ["image_load", "retrieval", "expert", "prefix_forward", "latent_loop", "decode", "formatting"]
    assert list(data["stages"]) == stages
    for timing in data["stages"].values():
        assert timing["n"] == 4 and 0 < timing["median_ms"] <= timing["p95_ms"] <= timing["max_ms"]
    assert data["default_inspection_ms"]["n"] == 4 and "default_inspection_seconds" in data["goals"]
    assert [run["workers"] for run in data["triage"]] == [1, 2, 4]
    assert all(
        run["images"] == 4 and run["errors"] == 0 and run["images_per_s"] > 0 for run in data["triage"]
    )
    assert set(data["goals"]) >= {
        "latent_loop_speedup",
        "inspection_vs_plain",
        "expert_ms_per_image",
        "knowledge_search_p50",
    }
    for goal in data["goals"].values():
        assert goal["ratio"] == goal["measured"] / goal["target"]
        assert goal["met"] == (
            goal["measured"] >= goal["target"]
            if goal["higher_is_better"]
            else goal["measured"] <= goal["target"]
        )
    assert data["goals"]["expert_ms_per_image"]["measured"] == data["stages"]["expert"]["median_ms"]
    assert data["memory"]["tracemalloc_peak_bytes"] > 0 and data["memory"]["ru_maxrss_bytes"] > 0
    assert data["latent"]["loop_speedup"] > 1.0  # the cached loop beats the naive one even when tiny
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000
