"""Admission, disconnects, Retry-After and refused inputs of the reasoner service (issue 17, items 7-9)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from serving_inputs import build_input, wait_until

from riad_agent.errors import BackendUnavailableError, InvalidRequestError, QueueFullError
from riad_agent.protocols import ProgressCallback, ReasoningInput, ReasoningResult
from riad_agent.schemas import ReasoningTrace
from riad_agent.serving.client import HttpReasoner
from riad_agent.serving.service import BackgroundServer, ReasonerService, ServiceConfig
from riad_agent.serving.wire import encode_input, encode_result
from riad_agent.serving.worker import ModelWorker

ServeFn = Callable[..., BackgroundServer]


class SteppingReasoner:
    """Reports one progress event per ``step_s`` for ``request.latent_steps`` steps; records how far it got."""

    model_id = "stepping"

    def __init__(self, step_s: float = 0.02) -> None:
        self.step_s = step_s
        self.started: list[int] = []
        self.finished_steps: list[int] = []

    def reason(self, request: ReasoningInput, progress: ProgressCallback | None = None) -> ReasoningResult:
        self.started.append(request.seed)
        done = 0
        try:
            for step in range(request.latent_steps):
                time.sleep(self.step_s)
                if progress is not None:
                    progress({"iteration": step, "reward": 0.5})
                done += 1
        finally:
            self.finished_steps.append(done)
        trace = ReasoningTrace(
            model_id=self.model_id, reward_kind="none", latent_tokens=1, initial_reward=0.5, final_reward=0.5
        )
        return ReasoningResult(answer="A", text="A.", trace=trace)


def _json(request: ReasoningInput) -> dict[str, object]:
    return encode_input(request).model_dump(mode="json")


# --- item 7: a client that disconnects ------------------------------------------------------------


def test_a_disconnected_client_cancels_its_job(serve: ServeFn) -> None:
    reasoner = SteppingReasoner(step_s=0.2)
    server = serve(reasoner, timeout_s=120)
    service: ReasonerService = server.app.state.service
    with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
        httpx.post(f"{server.url}/v1/reason", json=_json(build_input(seed=1, steps=200)), timeout=0.5)
    wait_until(lambda: reasoner.finished_steps != [], timeout=30)
    assert reasoner.finished_steps[0] < 50  # stopped soon after the disconnect, not run for 40 s
    assert service.worker.cancelled == 1 and service.worker.completed == 0
    quick = httpx.post(f"{server.url}/v1/reason", json=_json(build_input(seed=2, steps=1)), timeout=30)
    assert quick.status_code == 200 and reasoner.started == [1, 2]


# --- item 8: admission before the body is read -------------------------------------------------------


async def _busy_service(max_queue: int = 1, **config: Any) -> tuple[ReasonerService, threading.Event]:
    """A service whose model is busy with one job and whose queue is full."""
    gate, entered = threading.Event(), threading.Event()

    class Blocked:
        model_id = "blocked"

        def reason(
            self, request: ReasoningInput, progress: ProgressCallback | None = None
        ) -> ReasoningResult:
            entered.set()
            gate.wait(30)
            return SteppingReasoner(0).reason(request)

    service = ReasonerService(Blocked(), ServiceConfig(max_queue=max_queue, **config))
    service.start()
    await asyncio.to_thread(service.worker.wait_ready, 10)
    service.worker.submit(build_input(seed=0, steps=1))
    await asyncio.to_thread(entered.wait, 10)
    for seed in range(max_queue):
        service.worker.submit(build_input(seed=1 + seed, steps=1))
    return service, gate


async def test_a_full_queue_refuses_before_reading_the_body() -> None:
    service, gate = await _busy_service()
    read: list[int] = []

    async def read_body(limit: int) -> bytes:
        read.append(limit)
        return b"{}"

    try:
        reply = await service.reason(None, read_body)
        assert reply.status == 429 and reply.body["error"]["code"] == "queue_full"  # type: ignore[index]
        assert int(reply.headers["Retry-After"]) >= 1
        assert read == []  # not a byte of the body was read
    finally:
        gate.set()
        await asyncio.to_thread(service.close)


def test_a_full_queue_answers_429_to_a_body_never_sent(serve: ServeFn) -> None:
    gate = threading.Event()

    class Blocked(SteppingReasoner):
        def reason(
            self, request: ReasoningInput, progress: ProgressCallback | None = None
        ) -> ReasoningResult:
            self.started.append(request.seed)
            gate.wait(30)
            return SteppingReasoner(0).reason(request, progress)

    blocked = Blocked(step_s=0)
    server = serve(blocked, max_queue=1)
    service: ReasonerService = server.app.state.service
    try:
        service.worker.submit(build_input(seed=0, steps=1))
        wait_until(lambda: blocked.started == [0])
        service.worker.submit(build_input(seed=1, steps=1))
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/reason HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 20000000\r\n\r\n"
            )  # a 20 MB body announced, none sent
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 429")
    finally:
        gate.set()


async def test_bodies_are_decoded_a_few_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from riad_agent.serving import service as service_module

    inside, most = 0, 0
    lock = threading.Lock()
    decode = service_module.decode_input

    def counted(*args: Any) -> ReasoningInput:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        time.sleep(0.05)
        with lock:
            inside -= 1
        return decode(*args)

    monkeypatch.setattr(service_module, "decode_input", counted)
    service = ReasonerService(SteppingReasoner(0), ServiceConfig(max_queue=4, max_bodies=1))
    service.start()
    await asyncio.to_thread(service.worker.wait_ready, 10)
    body = encode_input(build_input(seed=3, steps=1)).model_dump_json().encode()

    async def read_body(limit: int) -> bytes:
        return body

    try:
        replies = await asyncio.gather(*(service.reason(None, read_body) for _ in range(4)))
        assert [reply.status for reply in replies] == [200] * 4
        assert most == 1
    finally:
        await asyncio.to_thread(service.close)


# --- item 9: Retry-After that estimates the wait, and a client that honours it ---------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_retry_after_is_the_rest_of_the_running_batch_not_the_whole_queue() -> None:
    clock = _Clock()
    step = threading.Event()

    class Timed:
        model_id = "timed"

        def reason(
            self, request: ReasoningInput, progress: ProgressCallback | None = None
        ) -> ReasoningResult:
            step.wait(10)
            step.clear()
            clock.now += request.latent_steps + 1.0  # one (fake) second per step, prefix and decode included
            return SteppingReasoner(0).reason(request)

    worker = ModelWorker(Timed(), max_queue=8, max_batch=1, clock=clock)
    worker.start()
    first = worker.submit(build_input(seed=0, steps=9))
    step.set()
    first.future.result(10)  # measured: 10 s for 9 steps
    running = worker.submit(build_input(seed=1, steps=9))
    wait_until(lambda: worker.running == 1)
    for seed in range(8):
        worker.submit(build_input(seed=2 + seed, steps=9))
    clock.now += 3.0  # three seconds into the running request
    with pytest.raises(QueueFullError) as refused:
        worker.submit(build_input(seed=20, steps=9))
    assert worker.retry_after_s() == 7  # a place frees when the running one ends, in 10 - 3 s
    assert "retry after 7 s" in refused.value.message
    step.set()
    running.future.result(10)
    worker.close()


def _ok_body() -> bytes:
    result = SteppingReasoner(0).reason(build_input(steps=1))
    return encode_result(result, model_id="stepping").model_dump_json().encode()


def _answers(responses: list[httpx.Response]) -> tuple[httpx.MockTransport, list[float]]:
    seen: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        return responses[min(len(seen), len(responses)) - 1]

    return httpx.MockTransport(handle), seen


def _busy(retry_after: str) -> httpx.Response:
    return httpx.Response(
        429, headers={"Retry-After": retry_after}, json={"error": {"code": "queue_full", "message": "full"}}
    )


def test_the_client_keeps_honouring_retry_after_until_its_deadline() -> None:
    transport, seen = _answers([_busy("0.01")] * 30 + [httpx.Response(200, content=_ok_body())])
    client = HttpReasoner("http://reasoner.test", timeout_s=30, transport=transport)
    assert client.reason(build_input()).answer == "A"  # 30 refusals: paced, not counted out
    assert len(seen) == 31


def test_the_client_fails_at_once_when_the_advertised_wait_passes_its_deadline() -> None:
    transport, seen = _answers([_busy("446")])
    client = HttpReasoner("http://reasoner.test", timeout_s=5, transport=transport)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="446 s.*timeout of 5 s"):
        client.reason(build_input())
    assert len(seen) == 1 and time.monotonic() - started < 4


# --- item 9: an image_score without its patch_prior is refused, never ignored -------------------------


def test_a_score_without_a_prior_is_refused(serve: ServeFn) -> None:
    reasoner = SteppingReasoner(0)
    server = serve(reasoner)
    body = _json(build_input(steps=1, prior=False))
    body["image_score"] = 0.9
    refused = httpx.post(f"{server.url}/v1/reason", json=body, timeout=30)
    assert (
        refused.status_code == 422 and "image_score needs patch_prior" in refused.json()["error"]["message"]
    )
    request = build_input(steps=1, prior=False)
    request.image_score = 0.9
    with pytest.raises(InvalidRequestError, match="image_score needs patch_prior"):
        encode_input(request)
    with_prior = build_input(steps=1)
    with_prior.image_score = 0.9
    assert httpx.post(f"{server.url}/v1/reason", json=_json(with_prior), timeout=30).status_code == 200
    assert reasoner.started == [0]


def test_the_in_process_reasoner_refuses_a_score_without_a_prior() -> None:
    from riad_agent.serving.service import tiny_reasoner

    request = build_input(steps=1, prior=False)
    request.image_score = 0.9
    with pytest.raises(InvalidRequestError, match="image_score needs patch_prior"):
        tiny_reasoner()().reason(request)
