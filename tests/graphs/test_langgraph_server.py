"""Both graphs through LangGraph Server's HTTP API (``langgraph dev``, in-memory runtime, loopback).

The server is started the way ``langgraph dev`` starts it, on graphs built by
``riad_agent.graphs.serving`` with fake components, and gets JSON input as any HTTP client sends
it. Skipped where ``langgraph-cli[inmem]`` (with ``langgraph-api``) is not installed.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.fakes import part_image

from riad_agent.serving.service import free_port

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("langgraph_api") is None or importlib.util.find_spec("langgraph_cli") is None,
    reason="langgraph-cli[inmem] and langgraph-api are not installed",
)

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    root = tmp_path_factory.mktemp("langgraph-server")
    graphs = {name: f"{HERE / 'served_fakes.py'}:{name}" for name in ("inspection", "triage")}
    config = root / "langgraph.json"
    config.write_text(json.dumps({"dependencies": ["."], "graphs": graphs}))
    port = free_port()
    env = {
        **os.environ,
        "RIAD_DATA_DIR": str(root / "data"),
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGSMITH_TRACING": "false",
    }
    command = [sys.executable, "-m", "langgraph_cli", "dev", "--config", str(config), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-browser", "--no-reload"]
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    "langgraph dev did not start:\n"
                    + (root / "server.log").read_text(errors="replace")[-3000:]
                )
            try:
                if client.get("/ok").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        yield client
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parts")
    (root / "images").mkdir()
    paths = {
        "bad": root / "images" / "bad.png",
        "good": root / "images" / "good.png",
        "ref": root / "ref.png",
    }
    part_image(True, seed=2).save(paths["bad"])
    part_image(False, seed=4).save(paths["good"])
    part_image(False, seed=3).save(paths["ref"])
    return paths


def _run(client: httpx.Client, graph: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/runs/wait", json={"assistant_id": graph, "input": payload})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize(
    ("graph", "inputs", "outputs"), [("inspection", "request", "report"), ("triage", "job", "summary")]
)
def test_schemas_show_the_request_and_the_result(
    server: httpx.Client, graph: str, inputs: str, outputs: str
) -> None:
    assistants = server.post("/assistants/search", json={"graph_id": graph}).json()
    schemas = server.get(f"/assistants/{assistants[0]['assistant_id']}/schemas").json()
    assert schemas["input_schema"] is not None and schemas["output_schema"] is not None
    assert list(schemas["input_schema"]["properties"]) == [inputs]
    assert list(schemas["output_schema"]["properties"]) == [outputs]


def test_inspection_with_json_input(server: httpx.Client, parts: dict[str, Path]) -> None:
    request = {
        "image": str(parts["bad"]),
        "category": "washer",
        "references": [str(parts["ref"])],
        "options": {"latent_steps": 2, "return_heatmap": True, "reasoner_when": "always"},
    }
    report = _run(server, "inspection", {"request": request})["report"]
    assert report["verdict"] == "anomalous" and report["category"] == "synthetic/washer"
    assert report["regions"] and report["trace"]["model_id"] == "fake-reasoner"
    assert base64.b64decode(report["heatmap_png"]) == b"\x89PNGfake"
    assert report["degraded"] == []

    plain = _run(server, "inspection", {"request": {**request, "options": {"latent_steps": 2}}})["report"]
    assert plain["heatmap_png"] is None  # asked for none, encoded none


def test_inspection_errors_are_typed(server: httpx.Client, parts: dict[str, Path]) -> None:
    invalid = _run(
        server, "inspection", {"request": {"image": str(parts["bad"]), "options": {"latent_steps": -1}}}
    )
    assert invalid["__error__"]["error"] == "InvalidRequestError"
    typo = _run(server, "inspection", {"request": {"image": str(parts["bad"]), "category": "hazelnutt"}})
    assert typo["__error__"]["error"] == "UnknownCategoryError"


def test_triage_with_json_input(server: httpx.Client, parts: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "triage.jsonl"
    job = {
        "images": str(parts["bad"].parent),
        "out": str(out),
        "references": [str(parts["ref"])],
        "options": {"latent_steps": 1},
    }
    summary = _run(server, "triage", {"job": job})["summary"]
    assert summary == {
        "total": 2,
        "skipped": 0,
        "inspected": 2,
        "anomalous": 1,
        "normal": 1,
        "uncertain": 0,
        "errors": 0,
        "out": str(out),
        "cautions": [],
    }
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(Path(r["image"]).name for r in records) == ["bad.png", "good.png"]
