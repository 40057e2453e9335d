"""The reasoner service on loopback: tiny model end to end, back-pressure, timeouts, auth, limits."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Callable

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from serving_inputs import build_input
from support.fakes import FakeReasoner
from typer.testing import CliRunner

from riad_agent.errors import ConfigurationError, ReasonerTimeoutError
from riad_agent.protocols import ReasoningInput
from riad_agent.reasoning import LatentConfig, LatentReasoner
from riad_agent.serving.client import HttpReasoner
from riad_agent.serving.service import (
    BackgroundServer,
    ReasonerService,
    ServiceConfig,
    create_app,
    is_loopback,
)
from riad_agent.serving.wire import PRIOR_MAX_SIDE, WireLimits, encode_input, shrink_prior

torch.set_num_threads(2)
ServeFn = Callable[..., BackgroundServer]


@pytest.fixture(scope="module")
def tiny() -> LatentReasoner:
    from riad_agent.models.tiny import build_tiny_qwen2_vl

    return LatentReasoner(build_tiny_qwen2_vl(), LatentConfig())


def _post(
    url: str, payload: bytes | dict[str, object], token: str | None = None, timeout: float = 30.0
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if isinstance(payload, bytes):
        return httpx.post(f"{url}/v1/reason", content=payload, headers=headers, timeout=timeout)
    return httpx.post(f"{url}/v1/reason", json=payload, headers=headers, timeout=timeout)


def _body(request: ReasoningInput | None = None) -> dict[str, object]:
    return encode_input(request or build_input(steps=1)).model_dump(mode="json")


def test_tiny_model_remote_equals_in_process(serve: ServeFn, tiny: LatentReasoner) -> None:
    server = serve(tiny, timeout_s=60)
    request = build_input(seed=3, steps=3, prior=False)
    with HttpReasoner(server.url, timeout_s=60) as client:
        assert client.model_id == "tiny-qwen2_vl"
        events: list[dict[str, object]] = []
        remote = client.reason(request, events.append)
    local = tiny.reason(request)
    assert remote.answer in ("A", "B") and remote.answer == local.answer
    assert remote.trace.model_id == "tiny-qwen2_vl"
    assert len(remote.trace.iterations) == len(local.trace.iterations) > 0
    for letter, probability in local.trace.option_probabilities.items():
        assert remote.trace.option_probabilities[letter] == pytest.approx(probability, abs=1e-5)
    assert remote.trace.final_reward == pytest.approx(local.trace.final_reward, abs=1e-5)
    assert [e["iteration"] for e in events] == [it.step for it in remote.trace.iterations]
    assert {"prefix_ms", "latent_ms", "decode_ms"} <= set(remote.timings_ms)
    health = httpx.get(f"{server.url}/healthz").json()
    assert health["status"] == "ok" and health["model_id"] == "tiny-qwen2_vl"
    assert health["precision"] == "float32"  # an operator sees which precision the replica runs


def test_readyz_reports_loading_then_ready(serve: ServeFn) -> None:
    gate = threading.Event()

    def slow_loader() -> FakeReasoner:
        gate.wait(10)
        return FakeReasoner()

    server = serve(slow_loader)
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    loading = httpx.get(f"{server.url}/readyz")
    assert loading.status_code == 503 and loading.json()["status"] == "loading"
    refused = _post(server.url, _body())
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "not_ready"
    gate.set()
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/readyz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert httpx.get(f"{server.url}/readyz").json()["model_id"] == "fake-reasoner"


def test_failed_model_load_is_reported_not_raised(serve: ServeFn) -> None:
    def broken() -> FakeReasoner:
        raise ConfigurationError("device 'cuda' was asked for but CUDA is not available")

    server = serve(broken)
    deadline = time.monotonic() + 10
    while (ready := httpx.get(f"{server.url}/readyz").json())["status"] == "loading":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert ready["status"] == "failed" and "CUDA is not available" in ready["detail"]
    assert _post(server.url, _body()).status_code == 503


def _wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_full_queue_answers_429_with_retry_after(serve: ServeFn) -> None:
    fake = FakeReasoner(delay_s=1.0)
    server = serve(fake, max_queue=1, timeout_s=30)
    service: ReasonerService = server.app.state.service
    results: dict[str, httpx.Response] = {}

    def send(name: str) -> None:
        results[name] = _post(server.url, _body())

    first = threading.Thread(target=send, args=("running",))
    first.start()
    _wait_for(lambda: len(fake.calls) == 1)  # the worker is busy with the first request
    second = threading.Thread(target=send, args=("queued",))
    second.start()
    _wait_for(lambda: service.worker.queued == 1)
    refused = _post(server.url, _body())
    first.join()
    second.join()
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "queue_full"
    assert int(refused.headers["Retry-After"]) >= 1
    assert results["running"].status_code == 200 and results["queued"].status_code == 200
    assert len(fake.calls) == 2  # the refused request never reached the model


def test_slow_model_gives_504_and_the_job_is_stopped(serve: ServeFn) -> None:
    fake = FakeReasoner(delay_s=1.5)
    server = serve(fake, timeout_s=0.3)
    started = time.monotonic()
    response = _post(server.url, _body())
    assert response.status_code == 504 and response.json()["error"]["code"] == "reasoner_timeout"
    assert time.monotonic() - started < 1.4
    with HttpReasoner(server.url, timeout_s=10, retries=0) as client, pytest.raises(ReasonerTimeoutError):
        client.reason(build_input(steps=1))


def test_bearer_token_required_when_configured(serve: ServeFn) -> None:
    server = serve(FakeReasoner(), token="s3cret")
    missing = _post(server.url, _body())
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert _post(server.url, _body(), token="wrong").status_code == 401
    assert _post(server.url, _body(), token="s3cret").status_code == 200


def test_refuses_non_loopback_bind_without_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5")
    with pytest.raises(ConfigurationError, match="without a token"):
        create_app(FakeReasoner(), ServiceConfig(host="0.0.0.0"))
    create_app(FakeReasoner(), ServiceConfig(host="0.0.0.0", token="t"))  # with a token it is allowed

    import typer

    from riad_agent.commands.serve_reasoner import serve_reasoner

    app = typer.Typer()
    app.command()(serve_reasoner)
    result = CliRunner().invoke(
        app, ["--model", "tiny", "--host", "0.0.0.0"], env={"RIAD_REASONER_TOKEN": ""}
    )
    assert result.exit_code == ConfigurationError.exit_code
    assert "ConfigurationError: refusing to serve the reasoner on 0.0.0.0 without a token" in result.output
    assert "Traceback" not in result.output


def _png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (9, 9, 9)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_limits_and_bad_inputs_are_typed_4xx(serve: ServeFn) -> None:
    fake = FakeReasoner()
    server = serve(fake, limits=WireLimits(max_body_bytes=200_000, max_image_pixels=100 * 100))
    too_big = _post(server.url, b"{" + b" " * 300_000 + b"}")
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "body_too_large"
    body = _body()
    body["image"] = _png(200, 200)
    pixels = _post(server.url, body)
    assert pixels.status_code == 413 and pixels.json()["error"]["code"] == "image_too_large"
    body["image"] = base64.b64encode(b"GIF89a not a png").decode()
    assert _post(server.url, body).json()["error"]["code"] == "invalid_image"
    body["image"] = "%%% not base64"
    assert _post(server.url, body).status_code == 422
    schema = _post(server.url, {**_body(), "latent_steps": -1})
    assert schema.status_code == 422 and "latent_steps" in schema.json()["error"]["message"]
    assert _post(server.url, b"not json").json()["error"]["code"] == "invalid_request"
    ragged = _post(server.url, {**_body(), "patch_prior": [[0.1, 0.2], [0.3]]})
    assert ragged.status_code == 422 and "same length" in ragged.json()["error"]["message"]
    huge = _post(server.url, {**_body(), "patch_prior": [[0.1, 1e300]]})  # float32 would overflow
    assert huge.status_code == 422 and "float32's range" in huge.json()["error"]["message"]
    score = _post(server.url, {**_body(), "image_score": 1.5})
    assert score.status_code == 422 and "image_score" in score.json()["error"]["message"]
    assert fake.calls == []  # nothing invalid reached the model


def test_prior_is_block_averaged_to_a_small_grid() -> None:
    prior = np.zeros((256, 128), dtype=np.float32)
    prior[:128, :64] = 1.0
    small = shrink_prior(prior)
    assert small.shape == (PRIOR_MAX_SIDE, PRIOR_MAX_SIDE)
    assert small[:32, :32].min() == 1.0 and small[32:, :].max() == 0.0 and small[:, 32:].max() == 0.0
    assert float(small.mean()) == pytest.approx(float(prior.mean()))
    assert shrink_prior(np.full((8, 5), 2.0)).max() == 1.0  # clipped to [0, 1]


def test_exemplars_cross_the_wire() -> None:
    from PIL import Image

    from riad_agent.protocols import ExemplarHint
    from riad_agent.serving.wire import WireRequest, decode_input

    request = build_input(steps=1)
    request.exemplars = [
        ExemplarHint("crack", 0.91, Image.new("RGB", (12, 8), (200, 10, 10))),
        ExemplarHint("hole", 0.7),
    ]
    request.exemplar_type = "crack"
    request.settled_score = 0.93
    body = WireRequest.model_validate_json(encode_input(request).model_dump_json())
    back = decode_input(body, WireLimits())
    assert back.settled_score == pytest.approx(0.93)
    assert back.exemplar_type == "crack" and [h.defect_type for h in back.exemplars] == ["crack", "hole"]
    assert back.exemplars[0].crop is not None and back.exemplars[0].crop.size == (12, 8)
    assert back.exemplars[1].crop is None and back.exemplars[0].similarity == pytest.approx(0.91)


_CLI = (
    "import typer; from riad_agent.commands.serve_reasoner import serve_reasoner; typer.run(serve_reasoner)"
)


def test_cli_serves_the_tiny_model_with_a_token() -> None:
    import os
    import subprocess
    import sys

    from riad_agent.serving.service import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CLI,
            "--model",
            "tiny",
            "--device",
            "cpu",
            "--port",
            str(port),
            "--max-queue",
            "2",
        ],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "RIAD_REASONER_TOKEN": "cli-token"},
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the CLI service did not start"
            time.sleep(0.2)
        assert _post(url, _body()).status_code == 401  # the token came from RIAD_REASONER_TOKEN
        with HttpReasoner(url, token="cli-token", timeout_s=60) as client:
            result = client.reason(build_input(steps=1))
            assert client.model_id == "tiny-qwen2_vl" and result.answer in ("A", "B")
        assert httpx.get(f"{url}/healthz").json()["max_queue"] == 2
    finally:
        process.terminate()
        process.wait(20)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on machines without CUDA")
def test_cli_refuses_cuda_without_cuda() -> None:
    import typer

    from riad_agent.commands.serve_reasoner import serve_reasoner

    app = typer.Typer()
    app.command()(serve_reasoner)
    result = CliRunner().invoke(app, ["--model", "tiny", "--device", "cuda"])
    assert result.exit_code == ConfigurationError.exit_code
    assert result.output.strip().endswith("CUDA is not available; use 'cpu' or 'auto'")
