"""Fault drills: each scenario must end in its typed outcome, with nothing already written lost. JSON.

    python benchmarks/faults.py [--only NAME ...] [--out faults.json]

Everything runs on loopback. Most drills use a delay-only reasoner (``SleepyReasoner``: answers 'A'
after a set delay, with an honest trace) to exercise the service, the client and the graph: queue
full (429), service timeout (504), missing token (401), exposed without token (refused), retries
then circuit breaker, server killed mid-request, slower than the client timeout, garbage answers,
the inspection graph degrading when the service dies or is slow, the embedded Qdrant store locked
by another process, and disk full under the triage output (a 64 KiB tmpfs when mounting is
allowed, else ``/dev/full``). The ``builtin_*`` drills run ``riad serve reasoner --model builtin``
(the real model, on CPU) in a subprocess: a client that disconnects mid-request, kill -9
mid-request then a restart that the client's half-open breaker notices, and SIGINT with jobs in
flight. Every drill reports what it held (``held``: requests, faults injected, answered, typed
errors, lost; lost must be 0). Exit status 1 if any drill fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from PIL import Image

from riad_agent.errors import (
    RiadError,
)
from riad_agent.protocols import ProgressCallback, ReasoningInput, ReasoningResult
from riad_agent.schemas import IterationTrace, MultipleChoiceQuestion, ReasoningTrace
from riad_agent.serving.client import HttpReasoner
from riad_agent.serving.service import BackgroundServer, ServiceConfig, create_app, free_port
from riad_agent.serving.wire import encode_input

QUESTION = MultipleChoiceQuestion(text="Is there a defect?", options={"A": "Yes.", "B": "No."})


class SleepyReasoner:
    """A reasoner that answers 'A' after ``delay_s`` (checking for cancellation each 50 ms)."""

    model_id = "sleepy"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls = 0

    def reason(self, request: ReasoningInput, progress: ProgressCallback | None = None) -> ReasoningResult:
        self.calls += 1
        deadline = time.monotonic() + self.delay_s
        step = 0
        while time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            if progress is not None:
                progress({"iteration": step, "reward": 0.5})
            step += 1
        iteration = IterationTrace(step=0, reward=0.5, entropy=0.5, sigma=0.1, accepted=True, elapsed_ms=1.0)
        trace = ReasoningTrace(
            model_id=self.model_id,
            reward_kind="none",
            latent_tokens=request.latent_tokens,
            initial_reward=0.5,
            final_reward=0.5,
            iterations=[iteration],
            option_probabilities={"A": 1.0},
        )
        return ReasoningResult(
            answer="A", text="A.", trace=trace, timings_ms={"total_ms": self.delay_s * 1000}
        )


def _input(seed: int = 0) -> ReasoningInput:
    rng = np.random.default_rng(seed)
    return ReasoningInput(
        image=Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)), question=QUESTION
    )


def _wait(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)


def _typed(call: Callable[[], object]) -> tuple[str, str]:
    """(error class name, one-line message) of what ``call`` raised, or ('ok', '')."""
    try:
        call()
    except RiadError as exc:
        return type(exc).__name__, exc.one_line()
    return "ok", ""


@contextlib.contextmanager
def _served(reasoner: object, **config: Any) -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_app(reasoner, ServiceConfig(**config)))  # type: ignore[arg-type]
    with server:
        yield server


# --- scenarios: each returns (outcome, detail dict); 'expected' is declared with it -----------------


def queue_full() -> tuple[str, dict[str, Any]]:
    sleepy = SleepyReasoner(delay_s=1.0)
    with _served(sleepy, max_queue=1) as server:
        threads = [threading.Thread(target=lambda: HttpReasoner(server.url, retries=0).reason(_input()))]
        threads[0].start()
        _wait(lambda: sleepy.calls == 1)
        threads.append(threading.Thread(target=lambda: HttpReasoner(server.url, retries=0).reason(_input())))
        threads[1].start()
        service = server.app.state.service
        _wait(lambda: service.worker.queued == 1)
        raw = httpx.post(f"{server.url}/v1/reason", json=encode_input(_input()).model_dump(mode="json"))
        outcome, message = _typed(lambda: HttpReasoner(server.url, busy_retries=0).reason(_input()))
        patient, _ = _typed(lambda: HttpReasoner(server.url).reason(_input()))  # paced by Retry-After
        for thread in threads:
            thread.join()
    return outcome, {
        "http_status": raw.status_code,
        "code": raw.json()["error"]["code"],
        "retry_after": raw.headers.get("Retry-After"),
        "client_error": message,
        "client_with_busy_retries": patient,
        "model_calls": sleepy.calls,
    }


def service_timeout() -> tuple[str, dict[str, Any]]:
    with _served(SleepyReasoner(delay_s=2.0), timeout_s=0.3) as server:
        started = time.monotonic()
        outcome, message = _typed(lambda: HttpReasoner(server.url, retries=0).reason(_input()))
        return outcome, {"client_error": message, "elapsed_s": round(time.monotonic() - started, 3)}


def missing_token() -> tuple[str, dict[str, Any]]:
    with _served(SleepyReasoner(), token="drill-token") as server:
        outcome, message = _typed(lambda: HttpReasoner(server.url).reason(_input()))
        good, _ = _typed(lambda: HttpReasoner(server.url, token="drill-token").reason(_input()))
    return outcome, {"client_error": message, "with_token": good}


def exposed_without_token() -> tuple[str, dict[str, Any]]:
    outcome, message = _typed(lambda: create_app(SleepyReasoner(), ServiceConfig(host="0.0.0.0")))
    return outcome, {"error": message}


def circuit_breaker() -> tuple[str, dict[str, Any]]:
    client = HttpReasoner(
        f"http://127.0.0.1:{free_port()}",
        retries=2,
        backoff_s=0.01,
        breaker_threshold=3,
        breaker_cooldown_s=60,
    )
    errors = [_typed(lambda: client.reason(_input()))[0] for _ in range(3)]
    attempts_before = client.attempts
    outcome, message = _typed(lambda: client.reason(_input()))
    return outcome, {
        "first_errors": errors,
        "attempts_before_open": attempts_before,
        "attempts_while_open": client.attempts - attempts_before,
        "breaker": client.breaker.state,
        "error": message,
    }


def server_killed_mid_request() -> tuple[str, dict[str, Any]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, __file__, "--serve-sleepy", str(port), "30"])
    try:
        _wait(lambda: _ready(url), 60)
        client = HttpReasoner(url, timeout_s=60, retries=2, backoff_s=0.05)
        result: list[tuple[str, str]] = []
        worker = threading.Thread(target=lambda: result.append(_typed(lambda: client.reason(_input()))))
        started = time.monotonic()
        worker.start()
        time.sleep(1.0)
        process.send_signal(signal.SIGKILL)
        worker.join(30)
        outcome, message = result[0]
        return outcome, {
            "error": message,
            "elapsed_s": round(time.monotonic() - started, 3),
            "attempts": client.attempts,
        }
    finally:
        process.kill()
        process.wait(10)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def slow_beyond_client_timeout() -> tuple[str, dict[str, Any]]:
    with _served(SleepyReasoner(delay_s=3.0), timeout_s=30) as server:
        started = time.monotonic()
        outcome, message = _typed(lambda: HttpReasoner(server.url, timeout_s=0.5).reason(_input()))
        return outcome, {"error": message, "elapsed_s": round(time.monotonic() - started, 3)}


def garbage_response() -> tuple[str, dict[str, Any]]:
    app = FastAPI()

    @app.post("/v1/reason")
    async def garbage() -> PlainTextResponse:
        return PlainTextResponse("<html>surprise</html>", status_code=200)

    with BackgroundServer(app) as server:
        outcome, message = _typed(lambda: HttpReasoner(server.url).reason(_input()))
    return outcome, {"error": message}


def _inspect(url: str, timeout_s: float, folder: Path) -> list[str]:
    from riad_agent.components import build_components
    from riad_agent.inspector import Inspector
    from riad_agent.settings import Settings

    settings = Settings(data_dir=folder / "data", reasoner_url=url, reasoner_timeout_s=timeout_s)
    image = folder / "part.png"
    _input().image.save(image)
    report = Inspector(components=build_components(settings)).inspect(
        {"image": str(image), "options": {"use_knowledge": False, "latent_steps": 1}}
    )
    return report.degraded


def graph_service_dead(folder: Path) -> tuple[str, dict[str, Any]]:
    degraded = _inspect(f"http://127.0.0.1:{free_port()}", 10.0, folder)
    return ("reasoner_unavailable" if "reasoner_unavailable" in degraded else "report"), {
        "degraded": degraded
    }


def graph_service_slow(folder: Path) -> tuple[str, dict[str, Any]]:
    with _served(SleepyReasoner(delay_s=3.0), timeout_s=30) as server:
        degraded = _inspect(server.url, 0.5, folder)
    return ("reasoner_timeout" if "reasoner_timeout" in degraded else "report"), {"degraded": degraded}


_OPEN_KB = """
import sys
from riad_agent.errors import RiadError
from riad_agent.knowledge import open_knowledge_base
from riad_agent.settings import Settings
try:
    kb = open_knowledge_base(Settings(data_dir=sys.argv[1], embedder="hashing", knowledge_lock_timeout_s=2))
    print("OPENED", len(kb.categories()))
    if sys.argv[2] == "write":
        with kb.writing():
            pass
        print("WROTE")
except RiadError as exc:
    print("ERROR", type(exc).__name__, exc.one_line())
"""


def qdrant_locked(folder: Path) -> tuple[str, dict[str, Any]]:
    """Another process holds the embedded store's writer lock: readers go on, a second writer waits, then fails typed."""
    from riad_agent.knowledge import open_knowledge_base
    from riad_agent.settings import Settings

    data = folder / "kb"
    kb = open_knowledge_base(Settings(data_dir=data, embedder="hashing"))
    before = len(kb.categories())

    def other(mode: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", _OPEN_KB, str(data), mode], capture_output=True, text=True, timeout=300
        )
        return done.stdout.strip().splitlines()[-1]

    with kb.writing():  # this process holds the writer lock for the whole drill
        reader = other("read")
        writer = other("write")
    kb.close()
    after = other("write")
    parts = writer.split(" ", 2)
    outcome = parts[1] if parts[0] == "ERROR" else "wrote"
    return outcome, {
        "reader_while_locked": reader,
        "writer_while_locked": writer,
        "categories_before": before,
        "writer_after_release": after,
        "nothing_lost": reader == f"OPENED {before}" and after == "WROTE",
    }


def _mount_tmpfs(folder: Path) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True
    )
    return done.returncode == 0


def _typed_or_crash(call: Callable[[], object]) -> tuple[str, str]:
    """Like :func:`_typed`, but an untyped OSError is reported as a crash instead of escaping."""
    try:
        return _typed(call)
    except OSError as exc:
        return f"crash: {type(exc).__name__}", f"untyped {type(exc).__name__}: {exc}"


def disk_full_triage(folder: Path) -> tuple[str, dict[str, Any]]:
    from riad_agent.components import build_components
    from riad_agent.graphs.triage import (
        JsonlWriter,
        TriageJob,
        TriageRecord,
        build_triage_graph,
        read_finished,
        run_triage,
    )
    from riad_agent.schemas import InspectionOptions
    from riad_agent.settings import Settings

    disk = folder / "tiny-disk"
    if not _mount_tmpfs(disk):
        # no tmpfs: the writer itself against /dev/full (never give /dev/full to read_finished: it reads forever)
        async def write_one() -> None:
            writer = JsonlWriter(Path("/dev/full"))
            try:
                await writer.write(TriageRecord(image="x.png", elapsed_ms=1.0))
            finally:
                with contextlib.suppress(OSError):
                    writer.close()

        outcome, message = _typed_or_crash(lambda: asyncio.run(write_one()))
        return outcome, {"medium": "/dev/full", "error": message}
    images = folder / "images"
    images.mkdir()
    for index in range(400):
        rng = np.random.default_rng(index)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            images / f"img-{index:04d}.png"
        )
    out = disk / "triage.jsonl"
    job = TriageJob(
        images=images,
        out=out,
        heatmaps=False,
        concurrency=2,
        options=InspectionOptions(use_knowledge=False, use_reasoner=False),
    )
    graph = build_triage_graph(components=build_components(Settings(data_dir=folder / "data")))
    try:
        outcome, message = _typed_or_crash(lambda: asyncio.run(run_triage(job, graph)))
        size_after_error = out.stat().st_size
        kept = read_finished(out, retry_errors=False)  # also cuts a torn last line
        parsed = [json.loads(line) for line in out.read_text().splitlines()]
        return outcome, {
            "medium": "tmpfs 64 KiB",
            "error": message,
            "bytes_at_error": size_after_error,
            "complete_lines_kept": len(parsed),
            "torn_bytes_cut": size_after_error - out.stat().st_size,
            "every_line_valid": len(parsed) == len(kept) == len({p["image"] for p in parsed}),
        }
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# --- the real builtin model in a `riad serve reasoner` subprocess ------------------------------------

_RIAD = "import sys; from riad_agent.cli import main; sys.argv[0] = 'riad'; main()"


def _held(requests: int, faults: int, answered: int, typed_errors: int) -> dict[str, int]:
    """What a drill held: every request ends answered or in a typed error; ``lost`` counts the rest."""
    return {
        "requests": requests,
        "faults": faults,
        "answered": answered,
        "typed_errors": typed_errors,
        "lost": requests - answered - typed_errors,
    }


def _start_builtin(folder: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _RIAD,
            "serve",
            "reasoner",
            "--model",
            "builtin",
            "--device",
            "cpu",
            "--port",
            str(port),
            *extra,
        ],
        env={
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "RIAD_DATA_DIR": str(folder / "data"),
            "OMP_NUM_THREADS": "2",
        },
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while not _ready(url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(
                f"riad serve reasoner --model builtin did not start: {process.communicate()[1][-500:]}"
            )
        time.sleep(0.2)
    return process


def _stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.kill()
    return process.communicate(timeout=60)[1]


def _steps(steps: int, seed: int = 0) -> ReasoningInput:
    request = _input(seed)
    request.latent_steps = steps
    return request


def _health(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/healthz", timeout=10).json())


def builtin_disconnect(folder: Path) -> tuple[str, dict[str, Any]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start_builtin(folder, port, "--timeout", "600")
    try:
        body = encode_input(_steps(150)).model_dump(mode="json")
        with contextlib.suppress(httpx.ReadTimeout):  # the client gives up after 3 s and hangs up
            httpx.post(f"{url}/v1/reason", json=body, timeout=3.0)
        started = time.monotonic()
        outcome, message = _typed(lambda: HttpReasoner(url, timeout_s=120).reason(_steps(0, seed=1)))
        next_s = time.monotonic() - started
        health = _health(url)
    finally:
        _stop(process)
    stopped = health["cancelled"] == 1
    return ("cancelled" if stopped and outcome == "ok" else outcome), {
        "next_request_s": round(next_s, 2),
        "health": health,
        "error": message,
        "held": _held(2, 1, 1 if outcome == "ok" else 0, 1 if stopped else 0),
    }


def builtin_kill9_restart(folder: Path) -> tuple[str, dict[str, Any]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client = HttpReasoner(
        url, timeout_s=120, retries=1, backoff_s=0.05, breaker_threshold=2, breaker_cooldown_s=3
    )
    process = _start_builtin(folder, port)
    outcomes: list[tuple[str, str]] = []
    try:
        worker = threading.Thread(target=lambda: outcomes.append(_typed(lambda: client.reason(_steps(100)))))
        worker.start()
        time.sleep(3.0)
        process.send_signal(signal.SIGKILL)  # mid-request
        worker.join(60)
        outcomes.append(_typed(lambda: client.reason(_steps(0))))  # nothing listens: the breaker opens
        attempts = client.attempts
        outcomes.append(_typed(lambda: client.reason(_steps(0))))  # refused by the open breaker at once
        while_open = client.attempts - attempts
        _stop(process)
        process = _start_builtin(folder, port)  # restarted on the same port
        _wait(lambda: client.breaker.state == "half_open", 30)
        outcomes.append(_typed(lambda: client.reason(_steps(0))))  # the half-open trial call
    finally:
        _stop(process)
    kinds = [kind for kind, _ in outcomes]
    recovered = kinds[-1] == "ok" and client.breaker.state == "closed" and while_open == 0
    answered = kinds.count("ok")
    typed = sum(1 for kind in kinds if kind != "ok" and not kind.startswith("crash"))
    return ("recovered" if recovered else ",".join(kinds)), {
        "outcomes": outcomes,
        "attempts_while_open": while_open,
        "breaker": client.breaker.state,
        "held": _held(len(kinds), 1, answered, typed),
    }


def builtin_sigint_in_flight(folder: Path) -> tuple[str, dict[str, Any]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start_builtin(folder, port, "--max-queue", "4", "--max-batch", "2", "--drain", "2")
    answers: list[object] = []
    body = encode_input(_steps(100)).model_dump(mode="json")

    def post() -> None:
        try:
            answers.append(httpx.post(f"{url}/v1/reason", json=body, timeout=300).status_code)
        except httpx.HTTPError as exc:
            answers.append(type(exc).__name__)

    clients = [threading.Thread(target=post) for _ in range(4)]
    try:
        for client in clients:
            client.start()
        _wait(lambda: _health(url)["queued"] >= 2, 60)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
        stop_s = time.monotonic() - started
    finally:
        stderr_rest = _stop(process) if process.poll() is None else ""
    for client in clients:
        client.join(60)
    stderr += stderr_rest
    clean = process.returncode == 0 and "terminate called" not in stderr and "Traceback" not in stderr
    return ("exit 0" if clean else f"exit {process.returncode}"), {
        "stop_s": round(stop_s, 2),
        "answers": answers,
        "terminate_called": "terminate called" in stderr,
        "held": _held(4, 1, sum(a == 200 for a in answers), sum(a == 503 for a in answers)),
    }


SCENARIOS: dict[str, tuple[str, Callable[..., tuple[str, dict[str, Any]]], bool]] = {
    # name: (expected outcome, drill, needs a scratch folder)
    "queue_full_429": ("BackendUnavailableError", queue_full, False),
    "service_timeout_504": ("ReasonerTimeoutError", service_timeout, False),
    "missing_token_401": ("BackendUnavailableError", missing_token, False),
    "exposed_without_token": ("ConfigurationError", exposed_without_token, False),
    "retries_then_circuit_open": ("BackendUnavailableError", circuit_breaker, False),
    "server_killed_mid_request": ("BackendUnavailableError", server_killed_mid_request, False),
    "slow_beyond_client_timeout": ("ReasonerTimeoutError", slow_beyond_client_timeout, False),
    "garbage_response": ("BackendUnavailableError", garbage_response, False),
    "graph_service_dead": ("reasoner_unavailable", graph_service_dead, True),
    "graph_service_slow": ("reasoner_timeout", graph_service_slow, True),
    "knowledge_store_write_locked": ("KnowledgeStoreLockedError", qdrant_locked, True),
    "disk_full_triage_output": ("OutputWriteError", disk_full_triage, True),
    "builtin_client_disconnects": ("cancelled", builtin_disconnect, True),
    "builtin_kill9_restart_half_open": ("recovered", builtin_kill9_restart, True),
    "builtin_sigint_jobs_in_flight": ("exit 0", builtin_sigint_in_flight, True),
}
_CHECKS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "queue_full_429": lambda d: (
        d["http_status"] == 429
        and d["code"] == "queue_full"
        and d["client_with_busy_retries"] == "ok"
        and d["model_calls"] == 3
    ),
    "missing_token_401": lambda d: d["with_token"] == "ok",
    "retries_then_circuit_open": lambda d: (
        d["attempts_while_open"] == 0 and "circuit breaker open" in d["error"]
    ),
    "server_killed_mid_request": lambda d: d["elapsed_s"] < 20,
    "knowledge_store_write_locked": lambda d: d["nothing_lost"],
    "disk_full_triage_output": lambda d: d.get("every_line_valid", True),
    "builtin_client_disconnects": lambda d: d["held"]["lost"] == 0,
    "builtin_kill9_restart_half_open": lambda d: d["held"]["lost"] == 0,
    "builtin_sigint_jobs_in_flight": lambda d: d["held"]["lost"] == 0,
}


def run(names: list[str]) -> list[dict[str, Any]]:
    results = []
    for name in names:
        expected, drill, scratch = SCENARIOS[name]
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                outcome, detail = drill(Path(tmp)) if scratch else drill()
            except Exception as exc:  # noqa: BLE001 - an untyped crash is a failed drill, reported as such
                outcome, detail = f"crash: {type(exc).__name__}", {"error": str(exc)}
        ok = outcome == expected and _CHECKS.get(name, lambda d: True)(detail)
        held = detail.get("held")
        results.append(
            {
                "scenario": name,
                "expected": expected,
                "outcome": outcome,
                "ok": ok,
                "elapsed_s": round(time.monotonic() - started, 3),
                "detail": detail,
            }
        )
        print(
            f"{'ok  ' if ok else 'FAIL'} {name}: {outcome}" + (f" held {held}" if held else ""),
            file=sys.stderr,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="Run only these scenarios.")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--serve-sleepy", nargs=2, metavar=("PORT", "DELAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sleepy:
        import uvicorn

        port, delay = int(args.serve_sleepy[0]), float(args.serve_sleepy[1])
        uvicorn.run(
            create_app(SleepyReasoner(delay), ServiceConfig(port=port)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
        return
    results = run(args.only or list(SCENARIOS))
    report = {
        "benchmark": "faults",
        "command": " ".join(["python", *sys.argv]),
        "passed": sum(r["ok"] for r in results),
        "total": len(results),
        "scenarios": results,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    sys.exit(0 if report["passed"] == report["total"] else 1)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
