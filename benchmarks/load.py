"""Load test: N concurrent inspections through the HTTP reasoner service, as JSON.

    python benchmarks/load.py [--inspections 48] [--concurrency 8] [--steps 2] [--max-queue 16] [--out load.json]
    python benchmarks/load.py --via mcp     # the same inspections as MCP tool calls (streamable HTTP)
    python benchmarks/load.py --model builtin --references 1 --inspections 12 --concurrency 8 \
        --max-queue 2 --max-batch 2 --expect-429       # the real model and the expert, past the queue
    python benchmarks/load.py --via flood --inspections 24 --body-mb 20 --max-queue 8 --steps 0
                                                       # 24 bodies of 20 MB at once: RSS, 429s

Starts ``riad serve reasoner``'s app (``--model``: the tiny random Qwen2-VL, or the builtin model,
on CPU) in a subprocess on a free loopback port, then runs ``--inspections`` inspections through
the inspection graph (settings ``reasoner_url`` pointing at it) with at most ``--concurrency`` in
flight. With ``--references N`` each inspection sends N normal references, so the vision expert
runs too (otherwise it is skipped and reports say ``no_references``). A ``--max-queue`` below the
concurrency makes the service answer 429; the client waits as its Retry-After says and retries, so
every inspection must still get its answer (``--expect-429`` fails the run unless some 429 was
seen). It stops by itself and reports: results lost or duplicated (each inspection must yield
exactly one report with a reasoning trace, and the service must have run exactly that many
requests; a ``reasoner_*`` degradation counts as a failure), the service's 429s and cancelled
jobs, p50/p95 latency, throughput, client retries, and the resident memory of both processes
sampled during the run (a flat curve means no leak: compare the first and last quarter).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from riad_agent.components import build_components
from riad_agent.inspector import Inspector
from riad_agent.serving.client import HttpReasoner
from riad_agent.serving.service import free_port
from riad_agent.settings import Settings

_SERVICE = """
import torch
torch.set_num_threads({threads})
import uvicorn
from riad_agent.serving.service import ServiceConfig, create_app, model_loader
config = ServiceConfig(port={port}, max_queue={max_queue}, max_batch={max_batch}, timeout_s=600)
uvicorn.run(create_app(model_loader({model!r}, device="cpu"), config), host="127.0.0.1", port={port},
            log_level="warning", access_log=False)
"""


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


class RssSampler:
    """Samples the RSS of some processes every ``period_s`` in a thread."""

    def __init__(self, pids: dict[str, int], period_s: float = 0.2) -> None:
        self.pids, self.period_s = pids, period_s
        self.samples: dict[str, list[float]] = {name: [] for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self.samples[name].append(rss_mb(pid))
            self._stop.wait(self.period_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, values in self.samples.items():
            quarter = max(1, len(values) // 4)
            first, last = statistics.fmean(values[:quarter]), statistics.fmean(values[-quarter:])
            out[name] = {
                "samples": len(values),
                "first_quarter_mb": round(first, 1),
                "last_quarter_mb": round(last, 1),
                "max_mb": round(max(values), 1),
                "growth_mb": round(last - first, 1),
            }
        return out


def _wait_ready(url: str, timeout_s: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/readyz", timeout=2)
            if response.status_code == 200:
                return dict(response.json())
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the reasoner service at {url} did not become ready in {timeout_s:.0f} s")


def _image_path(folder: Path, index: int) -> str:
    rng = np.random.default_rng(index)
    path = folder / f"part-{index:04d}.png"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    return str(path)


def _request(index: int, image: str, steps: int, references: list[str] | None = None) -> dict[str, Any]:
    return {
        "image": image,
        "references": references or [],
        "question": {"text": f"Is part {index} defective?", "options": {"A": "Yes.", "B": "No."}},
        "options": {"latent_steps": steps, "use_knowledge": False, "seed": index},
    }


Inspect = Callable[[int], Awaitable[dict[str, Any]]]


async def _drive(args: argparse.Namespace, inspect: Inspect) -> dict[str, Any]:
    """Run every inspection once with bounded concurrency; count what came back for each."""
    semaphore = asyncio.Semaphore(args.concurrency)
    results: dict[int, list[dict[str, Any]]] = {i: [] for i in range(args.inspections)}
    failures: list[str] = []
    latencies: list[float] = []

    async def one(index: int) -> None:
        async with semaphore:
            started = time.perf_counter()
            try:
                results[index].append(await inspect(index))
            except Exception as exc:  # noqa: BLE001 - counted as a lost result
                failures.append(f"{type(exc).__name__}: {exc}")
                return
            latencies.append((time.perf_counter() - started) * 1000.0)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(args.inspections)))
    wall = time.perf_counter() - started
    answered = [r[0] for r in results.values() if len(r) == 1]
    return {
        "wall_s": round(wall, 3),
        "throughput_per_s": round(args.inspections / wall, 3),
        "latency_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 1) if latencies else None,
            "p95": round(float(np.percentile(latencies, 95)), 1) if latencies else None,
            "max": round(max(latencies), 1) if latencies else None,
        },
        "lost": sum(1 for r in results.values() if not r),
        "duplicated": sum(1 for r in results.values() if len(r) > 1),
        "failures": failures[:5],
        "with_trace": sum(1 for r in answered if r["trace"]),
        "with_expert": sum(1 for r in answered if r.get("expert")),
        "reasoner_degraded": sum(1 for r in answered if any(d.startswith("reasoner") for d in r["degraded"])),
    }


async def _run_graph(args: argparse.Namespace, url: str, folder: Path) -> dict[str, Any]:
    """Inspections through the in-process graph, the reasoner over HTTP."""
    settings = Settings(data_dir=folder / "data", reasoner_url=url, reasoner_timeout_s=args.timeout)
    inspector = Inspector(components=build_components(settings))
    images = [_image_path(folder, i) for i in range(args.inspections)]
    references = [_image_path(folder, 10_000 + i) for i in range(args.references)]

    async def inspect(index: int) -> dict[str, Any]:
        report = await inspector.ainspect(_request(index, images[index], args.steps, references))
        return {
            "answer": report.answer,
            "degraded": report.degraded,
            "trace": report.trace is not None,
            "expert": report.anomaly_score is not None and "no_references" not in report.degraded,
        }

    run = await _drive(args, inspect)
    reasoner = inspector.components.reasoner.get()
    assert isinstance(reasoner, HttpReasoner)
    run.update(client_attempts=reasoner.attempts, client_retries=reasoner.attempts - args.inspections)
    return run


_MCP = """
from riad_agent.settings import Settings
from riad_agent.tools.mcp_server import serve_mcp
serve_mcp("streamable-http", host="127.0.0.1", port={port},
          settings=Settings(data_dir={data!r}, reasoner_url={url!r}, reasoner_timeout_s={timeout}))
"""


async def _run_mcp(args: argparse.Namespace, mcp_url: str, folder: Path) -> dict[str, Any]:
    """Inspections as MCP tool calls on one streamable-HTTP session (images sent as base64)."""
    import base64

    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    images = [
        base64.b64encode(Path(_image_path(folder, i)).read_bytes()).decode() for i in range(args.inspections)
    ]
    async with (
        streamablehttp_client(mcp_url, timeout=60, sse_read_timeout=args.timeout) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()

        async def inspect(index: int) -> dict[str, Any]:
            request = _request(index, images[index], args.steps)
            result = await session.call_tool("inspect_industrial_image", request)
            text = next(block.text for block in result.content if block.type == "text")
            if result.isError:
                raise RuntimeError(text)
            report = json.loads(text)
            return {
                "answer": report["answer"],
                "degraded": report["degraded"],
                "trace": report["trace"] is not None,
            }

        return await _drive(args, inspect)


def _run_flood(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """``--inspections`` bodies of about ``--body-mb`` MB each (a noise PNG), all sent at once, straight
    to the service: each must end in 200 or a typed refusal (429 before its body is read)."""
    import base64
    import io
    from collections import Counter

    side = int((args.body_mb * 1024 * 1024 * 0.75 / 3) ** 0.5)  # base64 of a barely compressible PNG
    noise = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(noise).save(png, format="PNG", compress_level=1)
    body = json.dumps(
        {
            "image": base64.b64encode(png.getvalue()).decode(),
            "question": {"text": "Is the part defective?", "options": {"A": "Yes.", "B": "No."}},
            "latent_steps": args.steps,
        }
    ).encode()
    statuses: list[int | str] = []
    latencies: list[float] = []

    def post() -> None:
        started = time.perf_counter()
        try:
            response = httpx.post(
                f"{url}/v1/reason",
                content=body,
                headers={"Content-Type": "application/json"},
                timeout=args.timeout,
            )
            statuses.append(
                response.status_code
                if "error" in response.json() or response.status_code == 200
                else f"untyped {response.status_code}"
            )
        except (httpx.HTTPError, ValueError) as exc:
            statuses.append(type(exc).__name__)
        latencies.append((time.perf_counter() - started) * 1000.0)

    started = time.perf_counter()
    threads = [threading.Thread(target=post) for _ in range(args.inspections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    counts = Counter(statuses)
    typed = sum(n for status, n in counts.items() if isinstance(status, int))
    return {
        "body_mb": round(len(body) / 2**20, 1),
        "statuses": {str(status): n for status, n in sorted(counts.items(), key=str)},
        "wall_s": round(wall, 3),
        "throughput_per_s": round(counts[200] / wall, 3),
        "latency_ms": {"p50": round(float(np.percentile(latencies, 50)), 1), "max": round(max(latencies), 1)},
        "lost": args.inspections - typed,
        "duplicated": 0,
        "failures": [str(status) for status in counts if not isinstance(status, int)][:5],
        "with_trace": counts[200],
        "with_expert": 0,
        "reasoner_degraded": 0,
    }


def _wait_port(port: int, timeout_s: float = 120.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inspections", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="Latent iterations per request.")
    parser.add_argument("--max-queue", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument(
        "--model", choices=["tiny", "builtin"], default="tiny", help="The served model (on CPU)."
    )
    parser.add_argument(
        "--references", type=int, default=0, help="Normal references per inspection (runs the expert)."
    )
    parser.add_argument(
        "--expect-429", action="store_true", help="Fail unless the service answered some 429."
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads in the service.")
    parser.add_argument("--timeout", type=float, default=300.0, help="Client timeout per request (s).")
    parser.add_argument(
        "--via",
        choices=["graph", "mcp", "flood"],
        default="graph",
        help="'graph': the inspection graph in this process; 'mcp': tool calls to an MCP server; "
        "'flood': --inspections large bodies (--body-mb) sent at once straight to the service.",
    )
    parser.add_argument("--body-mb", type=float, default=20.0, help="With --via flood: size of each body.")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.inspections < 1 or args.concurrency < 1:
        parser.error("--inspections and --concurrency must be positive")

    import tempfile

    port = free_port()
    url = f"http://127.0.0.1:{port}"  # loopback only
    script = _SERVICE.format(
        threads=args.threads, port=port, max_queue=args.max_queue, max_batch=args.max_batch, model=args.model
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    service = subprocess.Popen([sys.executable, "-c", script], env=env)
    processes = {"service": service}
    try:
        ready = _wait_ready(url)
        with tempfile.TemporaryDirectory() as tmp:
            if args.via == "mcp":
                mcp_port = free_port()
                mcp_script = _MCP.format(
                    port=mcp_port, data=str(Path(tmp) / "data"), url=url, timeout=args.timeout
                )
                processes["mcp"] = subprocess.Popen([sys.executable, "-c", mcp_script], env=env)
                _wait_port(mcp_port)
            pids = {"client": os.getpid(), **{name: p.pid for name, p in processes.items()}}
            with RssSampler(pids) as rss:
                if args.via == "mcp":
                    run = asyncio.run(_run_mcp(args, f"http://127.0.0.1:{mcp_port}/mcp", Path(tmp)))
                elif args.via == "flood":
                    run = _run_flood(args, url)
                else:
                    run = asyncio.run(_run_graph(args, url, Path(tmp)))
        health = httpx.get(f"{url}/healthz", timeout=5).json()
    finally:
        for process in processes.values():
            process.terminate()
            process.wait(20)
    run["service_completed"] = health["completed"]
    run["service_duplicates"] = health["completed"] - (
        run["with_trace"] if args.via == "flood" else args.inspections
    )
    run["service_refused_429"] = health.get("refused", 0)
    run["service_cancelled"] = health.get("cancelled", 0)
    result = {
        "benchmark": "reasoner_service_load",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": ready["model_id"],
        "via": args.via,
        "inspections": args.inspections,
        "concurrency": args.concurrency,
        "latent_steps": args.steps,
        "max_queue": args.max_queue,
        "max_batch": args.max_batch,
        "references": args.references,
        **run,
        "rss": rss.summary(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    ok = (
        run["lost"] == 0
        and run["duplicated"] == 0
        and run["service_duplicates"] == 0
        and not run["reasoner_degraded"]
    )
    ok = ok and (run["service_refused_429"] > 0 or not args.expect_429)
    ok = ok and (args.via != "graph" or run["with_expert"] == (args.inspections if args.references else 0))
    print(
        f"held: inspections {args.inspections}, 429s {run['service_refused_429']}, retries {run.get('client_retries')}, "
        f"lost {run['lost']}, duplicated {run['duplicated']}",
        file=sys.stderr,
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
