"""``HttpReasoner`` against failing services: retries, circuit breaker, dead and slow servers, garbage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from serving_inputs import build_input
from support.fakes import FakeReasoner

from riad_agent.errors import BackendUnavailableError, InvalidImageError, ReasonerTimeoutError
from riad_agent.serving.client import CircuitBreaker, HttpReasoner
from riad_agent.serving.service import BackgroundServer, ServiceConfig, create_app, free_port
from riad_agent.serving.wire import encode_result

TESTS = Path(__file__).resolve().parents[1]


def _ok_body() -> bytes:
    result = FakeReasoner().reason(build_input(steps=2))
    return encode_result(result, model_id="fake-reasoner", replica="r1").model_dump_json().encode()


def _mock(responses: list[httpx.Response]) -> tuple[httpx.MockTransport, list[float]]:
    """A transport answering with ``responses`` in turn; records when each request came."""
    seen: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        return responses[min(len(seen), len(responses)) - 1]

    return httpx.MockTransport(handle), seen


def test_retries_429_and_503_honouring_retry_after() -> None:
    busy = httpx.Response(
        429, headers={"Retry-After": "0.3"}, json={"error": {"code": "queue_full", "message": "full"}}
    )
    transport, seen = _mock(
        [
            busy,
            busy,
            httpx.Response(503, json={"error": {"code": "not_ready", "message": "loading"}}),
            httpx.Response(200, content=_ok_body()),
        ]
    )
    client = HttpReasoner(
        "http://reasoner.test", timeout_s=10, retries=1, backoff_s=0.01, transport=transport
    )
    result = client.reason(build_input())
    assert result.answer == "A" and client.model_id == "fake-reasoner" and client.last_replica == "r1"
    assert len(seen) == 4  # two 429s do not use up the single retry the 503 needed
    assert seen[1] - seen[0] >= 0.29 and seen[2] - seen[1] >= 0.29  # waited as told by Retry-After
    assert seen[3] - seen[2] < 0.25  # back-off of about 0.01 s without a Retry-After
    assert client.breaker.state == "closed" and client.breaker.failures == 0


def test_busy_retries_are_bounded() -> None:
    busy = httpx.Response(
        429, headers={"Retry-After": "0"}, json={"error": {"code": "queue_full", "message": "full"}}
    )
    transport, seen = _mock([busy])
    client = HttpReasoner("http://reasoner.test", timeout_s=10, busy_retries=3, transport=transport)
    with pytest.raises(BackendUnavailableError, match="HTTP 429"):
        client.reason(build_input())
    assert len(seen) == 4


def test_gives_up_after_retries_then_circuit_opens_and_recovers() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"  # nothing listens here yet
    client = HttpReasoner(
        url, timeout_s=10, retries=2, backoff_s=0.01, breaker_threshold=2, breaker_cooldown_s=0.5
    )
    for _ in range(2):
        with pytest.raises(BackendUnavailableError, match="cannot connect"):
            client.reason(build_input())
    assert client.attempts == 6 and client.breaker.state == "open"
    with pytest.raises(BackendUnavailableError, match="circuit breaker open"):
        client.reason(build_input())
    assert client.attempts == 6  # refused without touching the network
    with BackgroundServer(create_app(FakeReasoner(), ServiceConfig()), port=port):
        time.sleep(0.5)
        assert client.breaker.state == "half_open"
        assert client.reason(build_input()).answer == "A"  # the trial call closes the breaker
        assert client.breaker.state == "closed"


def test_half_open_trial_failure_reopens_at_once() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=3, cooldown_s=10, clock=lambda: now[0])
    for _ in range(3):
        breaker.before_call("svc")
        breaker.failure()
    assert breaker.state == "open"
    now[0] = 10.0
    breaker.before_call("svc")  # the one trial
    with pytest.raises(BackendUnavailableError):
        breaker.before_call("svc")  # a second caller while the trial runs
    breaker.failure()
    assert breaker.state == "open"
    now[0] = 19.0
    assert breaker.state == "open"
    now[0] = 20.0
    assert breaker.state == "half_open"


_SLOW_SERVICE = """
import sys
sys.path.insert(0, {tests!r})
import uvicorn
from support.fakes import FakeReasoner
from riad_agent.serving.service import ServiceConfig, create_app
uvicorn.run(create_app(FakeReasoner(delay_s=60), ServiceConfig(port={port})), host="127.0.0.1", port={port},
            log_level="warning")
"""


def _wait_healthy(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the service subprocess did not start"
        time.sleep(0.1)


def test_server_killed_mid_request_gives_backend_unavailable() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_SERVICE.format(tests=str(TESTS), port=port)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        _wait_healthy(url)
        client = HttpReasoner(url, timeout_s=30, retries=2, backoff_s=0.05)
        outcome: list[BaseException] = []

        def call() -> None:
            try:
                client.reason(build_input())
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=call)
        started = time.monotonic()
        worker.start()
        time.sleep(1.0)  # the request is now inside the service
        process.send_signal(signal.SIGKILL)
        worker.join(20)
        assert not worker.is_alive()
        assert len(outcome) == 1 and type(outcome[0]) is BackendUnavailableError
        assert time.monotonic() - started < 10  # not the 30 s timeout
        assert client.attempts == 3  # the broken request, then two refused reconnects
    finally:
        process.kill()
        process.wait(10)


def test_slow_beyond_client_timeout_is_reasoner_timeout() -> None:
    with BackgroundServer(create_app(FakeReasoner(delay_s=3.0), ServiceConfig(timeout_s=30))) as server:
        client = HttpReasoner(server.url, timeout_s=0.5, retries=3)
        started = time.monotonic()
        with pytest.raises(ReasonerTimeoutError, match="did not answer within 0.5 s"):
            client.reason(build_input())
        assert time.monotonic() - started < 2.0 and client.attempts == 1  # a timeout is not retried


@pytest.mark.parametrize(
    "response, error, message",
    [
        (httpx.Response(200, content=b"<html>not json</html>"), BackendUnavailableError, "invalid response"),
        (httpx.Response(200, json={"answer": "A"}), BackendUnavailableError, "invalid response"),
        (httpx.Response(200, json=[1, 2, 3]), BackendUnavailableError, "invalid response"),
        (httpx.Response(404, text="Not Found"), BackendUnavailableError, "HTTP 404"),
        (
            httpx.Response(500, json={"error": {"code": "internal", "message": "boom"}}),
            BackendUnavailableError,
            "boom",
        ),
        (
            httpx.Response(504, json={"error": {"code": "reasoner_timeout", "message": "slow"}}),
            ReasonerTimeoutError,
            "slow",
        ),
        (
            httpx.Response(401, json={"error": {"code": "unauthorized", "message": "no"}}),
            BackendUnavailableError,
            "token",
        ),
        (
            httpx.Response(422, json={"error": {"code": "invalid_image", "message": "image is not a PNG"}}),
            InvalidImageError,
            "image is not a PNG",
        ),
    ],
)
def test_garbage_and_error_answers_become_typed_errors(
    response: httpx.Response, error: type[Exception], message: str
) -> None:
    transport, seen = _mock([response])
    client = HttpReasoner("http://reasoner.test", timeout_s=5, retries=2, backoff_s=0.01, transport=transport)
    with pytest.raises(error, match=message) as caught:
        client.reason(build_input())
    assert type(caught.value) is error
    assert len(seen) == 1  # none of these is retried


def test_model_id_comes_from_readyz_lazily() -> None:
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(
            200, json={"status": "ready", "ready": True, "model_id": "Qwen/Qwen2-VL-2B-Instruct"}
        )

    client = HttpReasoner("http://reasoner.test/", transport=httpx.MockTransport(handle))
    assert calls == []
    assert client.model_id == "Qwen/Qwen2-VL-2B-Instruct" and client.model_id == "Qwen/Qwen2-VL-2B-Instruct"
    assert calls == ["/readyz"]
    down = HttpReasoner(f"http://127.0.0.1:{free_port()}", retries=0)
    with pytest.raises(BackendUnavailableError, match="cannot reach"):
        _ = down.model_id


def test_bad_settings_are_configuration_errors() -> None:
    from riad_agent.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="must start with http"):
        HttpReasoner("localhost:8700")
    with pytest.raises(ConfigurationError, match="positive"):
        HttpReasoner("http://localhost:8700", timeout_s=0)
