"""Four `riad` processes on one fresh data dir at once: inspect, triage, serve mcp and kb ingest.

Each builds or reads the embedded knowledge store while the others do; every inspection must come
back with citations and without ``knowledge_unavailable``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from riad_agent.data.synthetic import generate_sample
from riad_agent.knowledge.loaders import default_base_path
from riad_agent.settings import Settings

RIAD = str(Path(sys.executable).with_name("riad"))
FIXTURES = Path(__file__).parent / "fixtures" / "base"


def _env(tmp: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "RIAD_DATA_DIR": str(tmp / "data"),
        "RIAD_EMBEDDER": "hashing",  # the store's sharing, not retrieval quality, is under test
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "RIAD_MODEL_CACHE_DIR": str(Settings().model_cache_dir),
    }


def _images(tmp: Path) -> tuple[Path, Path, Path]:
    refs, batch = tmp / "refs", tmp / "batch"
    refs.mkdir()
    batch.mkdir()
    for index in range(2):
        generate_sample("synthetic/washer", None, seed=10 + index).image.save(refs / f"good_{index}.png")
    generate_sample("synthetic/washer", "hole", seed=99).image.save(tmp / "part.png")
    for index in range(3):
        generate_sample("synthetic/washer", "scratch", seed=50 + index).image.save(batch / f"b{index}.png")
    return refs, batch, tmp / "part.png"


async def _mcp_inspections(
    tmp: Path, env: dict[str, str], image: Path, refs: Path, times: int
) -> list[dict[str, Any]]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=RIAD, args=["serve", "mcp"], env=env, cwd=str(tmp))
    reports = []
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        for _ in range(times):
            result = await session.call_tool(
                "inspect_industrial_image",
                {
                    "image": str(image),
                    "category": "washer",
                    "references": [str(p) for p in sorted(refs.iterdir())],
                    "options": {"use_reasoner": False},
                },
            )
            text = next(c.text for c in result.content if c.type == "text")
            assert not result.isError, text
            reports.append(json.loads(text))
    return reports


async def _run_all(tmp: Path) -> dict[str, Any]:
    env = _env(tmp)
    refs, batch, part = _images(tmp)
    source = tmp / "mine"
    shutil.copytree(FIXTURES, source)

    async def run(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            *args, env=env, cwd=str(tmp), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
        return process.returncode or 0, out.decode(), err.decode()

    async def ingest_three_times() -> list[tuple[int, str, str]]:
        # the packaged base (racing with the others' first-time build of it), then two rebuilds with
        # the user's own knowledge: new generations published while the others read. (A store whose
        # first ingest is the user's own knowledge alone is left without the packaged base, by policy.)
        first = await run(RIAD, "kb", "ingest", str(default_base_path()), "--json")
        return [first] + [
            await run(RIAD, "kb", "ingest", str(source), "--rebuild", "--json") for _ in range(2)
        ]

    inspect, triage, mcp, ingests = await asyncio.gather(
        run(
            RIAD,
            "inspect",
            str(part),
            "--category",
            "washer",
            "--reference-dir",
            str(refs),
            "--no-reasoner",
            "--json",
        ),
        run(
            RIAD,
            "triage",
            str(batch),
            "--out",
            str(tmp / "results.jsonl"),
            "--category",
            "washer",
            "--reference-dir",
            str(refs),
            "--no-reasoner",
        ),
        _mcp_inspections(tmp, env, part, refs, times=2),
        ingest_three_times(),
    )
    return {"inspect": inspect, "triage": triage, "mcp": mcp, "ingests": ingests}


def _has_knowledge(report: dict[str, Any]) -> bool:
    return bool(report["knowledge"]) and "knowledge_unavailable" not in report["degraded"]


def test_four_processes_share_one_data_dir(tmp_path: Path) -> None:
    outcome = asyncio.run(asyncio.wait_for(_run_all(tmp_path), timeout=600))

    code, out, err = outcome["inspect"]
    assert code == 0, err
    report = json.loads(out)
    assert _has_knowledge(report), report["degraded"]
    assert all(k["id"].startswith("synthetic/washer/") for k in report["knowledge"])

    code, _, err = outcome["triage"]
    assert code == 0, err
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    # triage's fast path reads the store to resolve the category (no knowledge search, no report)
    assert len(lines) == 3 and all(line["verdict"] and not line["error"] for line in lines), lines
    assert all(line["product"] == "synthetic/washer" for line in lines), lines

    assert len(outcome["mcp"]) == 2 and all(_has_knowledge(r) for r in outcome["mcp"])

    for code, _, err in outcome["ingests"]:
        assert code == 0, err
    assert [json.loads(out)["rebuilt"] for _, out, _ in outcome["ingests"][1:]] == [True, True]
    # the user's knowledge landed next to the packaged base, which was built once
    listed = subprocess.run(
        [RIAD, "kb", "list", "--json"], capture_output=True, text=True, timeout=300, env=_env(tmp_path)
    )
    categories = {c["category"] for c in json.loads(listed.stdout)}
    assert {"synthetic/washer", "visa/candle", "mvtec/hazelnut"} <= categories
    generations = sorted(p.name for p in (tmp_path / "data" / "qdrant").glob("gen-*.npz"))
    assert len(generations) <= 3  # old generations are removed
