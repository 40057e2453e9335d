"""The reasoner service: ``POST /v1/reason``, ``GET /healthz``, ``GET /readyz``.

:class:`ReasonerService` holds the request logic (auth, body limit, parsing, queue, timeout, typed
errors) independently of the web framework, so the FastAPI app of :func:`create_app` and the Ray
Serve deployment (``riad_agent.serving.ray_app``) answer identically. :class:`BackgroundServer`
runs an app under uvicorn in a thread (tests, benchmarks, embedding).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from riad_agent.errors import (
    BodyTooLargeError,
    ConfigurationError,
    InvalidRequestError,
    QueueFullError,
    ReasonerTimeoutError,
    RiadError,
    ServiceError,
    UnauthorizedError,
    first_problem,
)
from riad_agent.protocols import Reasoner
from riad_agent.serving.wire import (
    REPLICA_HEADER,
    Health,
    WireLimits,
    WireRequest,
    decode_input,
    encode_result,
    error_body,
    status_for,
)
from riad_agent.serving.worker import JobCancelled, ModelWorker, ReasonerSource

ReasonPath = "/v1/reason"


@dataclass(frozen=True)
class ServiceConfig:
    """How the service is exposed and bounded."""

    host: str = "127.0.0.1"
    port: int = 8700
    token: str | None = None
    max_queue: int = 8
    max_batch: int = 4  # requests run together by the model worker (1 = one at a time)
    timeout_s: float = 120.0
    limits: WireLimits = field(default_factory=WireLimits)
    replica: str = ""


@dataclass
class Reply:
    """A framework-neutral HTTP answer."""

    status: int
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)


def is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to expose the service beyond loopback without a bearer token."""
    if not is_loopback(host) and not token:
        raise ConfigurationError(
            f"refusing to serve the reasoner on {host} without a token: pass --token (or set "
            "RIAD_REASONER_TOKEN) or bind to 127.0.0.1"
        )


class ReasonerService:
    """Auth, limits, parsing, queueing and timeouts around one :class:`ModelWorker`."""

    def __init__(self, reasoner: ReasonerSource, config: ServiceConfig) -> None:
        check_bind(config.host, config.token)
        self.config = config
        self.worker = ModelWorker(reasoner, max_queue=config.max_queue, max_batch=config.max_batch)

    def start(self) -> None:
        self.worker.start()

    def close(self) -> None:
        self.worker.close()

    def _headers(self) -> dict[str, str]:
        return {REPLICA_HEADER: self.config.replica} if self.config.replica else {}

    def _error(self, error: RiadError, extra: dict[str, str] | None = None) -> Reply:
        return Reply(status_for(error), error_body(error), {**self._headers(), **(extra or {})})

    def _refuse(self, error: ServiceError) -> Reply:
        """A refusal of the service itself, with the header that tells the client what to do next."""
        extra: dict[str, str] = {}
        if isinstance(error, QueueFullError):
            extra["Retry-After"] = str(self.worker.retry_after_s())
        elif isinstance(error, UnauthorizedError):
            extra["WWW-Authenticate"] = "Bearer"
        return self._error(error, extra)

    def authorised(self, authorization: str | None) -> bool:
        """Whether the ``Authorization`` header carries the configured bearer token (always, without one)."""
        if not self.config.token:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.config.token.encode())

    def health(self) -> Reply:
        """Liveness: the process answers."""
        return Reply(200, self._health("ok").model_dump(), self._headers())

    def readiness(self) -> Reply:
        """Readiness: 200 once the model is loaded, 503 while loading or after a failed load."""
        worker = self.worker
        if worker.ready:
            return Reply(200, self._health("ready").model_dump(), self._headers())
        status = "failed" if worker.load_error else "loading"
        return Reply(503, self._health(status, worker.load_error or "").model_dump(), self._headers())

    def _health(self, status: str, detail: str = "") -> Health:
        worker = self.worker
        return Health(
            status=status,
            ready=worker.ready,
            model_id=worker.model_id,
            replica=self.config.replica,
            queued=worker.queued,
            max_queue=worker.max_queue,
            completed=worker.completed,
            detail=detail,
        )

    async def reason(self, authorization: str | None, read_body: Callable[[int], Awaitable[bytes]]) -> Reply:
        """Handle ``POST /v1/reason``: ``read_body(limit)`` returns the body or raises BodyTooLargeError."""
        started = time.perf_counter()
        if not self.authorised(authorization):
            return self._refuse(
                UnauthorizedError("a valid bearer token is required: send 'Authorization: Bearer <token>'")
            )
        try:
            raw = await read_body(self.config.limits.max_body_bytes)
            try:
                body = WireRequest.model_validate_json(raw)
            except ValidationError as exc:
                where, problem = first_problem(exc)
                raise InvalidRequestError(f"invalid request field {where}: {problem}") from exc
            request = await asyncio.to_thread(decode_input, body, self.config.limits)
            job = self.worker.submit(request)
        except ServiceError as exc:  # queue full, model not ready, body too large
            return self._refuse(exc)
        except RiadError as exc:
            return self._error(exc)
        remaining = self.config.timeout_s - (time.perf_counter() - started)
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(job.future), timeout=max(remaining, 0.001))
        except TimeoutError:
            job.cancel()
            return self._error(
                ReasonerTimeoutError(f"the reasoner did not answer within the service timeout of {self.config.timeout_s:g} s")
            )
        except asyncio.CancelledError:
            job.cancel()  # the client went away
            raise
        except JobCancelled:
            return self._error(ReasonerTimeoutError("the request was cancelled before it finished"))
        except RiadError as exc:
            return self._error(exc)
        except Exception as exc:  # noqa: BLE001 - a model bug must not kill the service
            return Reply(
                500,
                {"error": {"code": "internal", "message": f"the reasoner failed: {type(exc).__name__}: {exc}"}},
                self._headers(),
            )
        model_id = self.worker.model_id or result.trace.model_id
        payload = encode_result(result, model_id=model_id, replica=self.config.replica)
        return Reply(200, payload.model_dump(mode="json"), self._headers())


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing (by header, then while streaming) anything over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(f"the request body has {declared} bytes, over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"the request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _respond(reply: Reply) -> JSONResponse:
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


def create_app(reasoner: ReasonerSource, config: ServiceConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``reasoner`` (a ready :class:`Reasoner`, or a zero-argument loader run
    in the worker thread so ``/readyz`` reports loading). Raises ConfigurationError for an unsafe bind."""
    config = config or ServiceConfig()
    service = ReasonerService(reasoner, config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            await asyncio.to_thread(service.close)

    app = FastAPI(title="riad-agent reasoner service", version="1", lifespan=lifespan)
    app.state.service = service

    @app.post(ReasonPath)
    async def reason(request: Request) -> JSONResponse:
        return _respond(await service.reason(request.headers.get("authorization"), lambda n: read_limited(request, n)))

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return _respond(service.health())

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        return _respond(service.readiness())

    return app


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class BackgroundServer:
    """Run an ASGI app under uvicorn in a daemon thread; ``url`` once started. A context manager."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int | None = None) -> None:
        import uvicorn

        self.app = app
        self.host = host
        self.port = port or free_port(host)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=self.port, log_level="warning", lifespan="on", access_log=False)
        )
        self._thread = threading.Thread(target=self.server.run, name="riad-reasoner-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the reasoner service did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout_s)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tiny_reasoner(device: str = "cpu") -> Callable[[], Reasoner]:
    """A loader for the tiny random Qwen2-VL reasoner (tests, demos; answers at random)."""

    def load() -> Reasoner:
        from riad_agent.models.tiny import build_tiny_qwen2_vl
        from riad_agent.reasoning import LatentConfig, LatentReasoner

        return LatentReasoner(build_tiny_qwen2_vl(device=device), LatentConfig())

    return load


def model_loader(model: str, device: str = "auto", dtype: str = "auto") -> Callable[[], Reasoner]:
    """A loader for ``model``: 'tiny', 'builtin' or a hub id / local path given to ``load_vlm``."""
    if model == "tiny":
        from riad_agent.models.device import resolve_device

        return tiny_reasoner(str(resolve_device(device)))

    def load() -> Reasoner:
        from riad_agent.models.loading import open_vlm
        from riad_agent.reasoning import LatentReasoner
        from riad_agent.reasoning.config import config_for
        from riad_agent.settings import load_settings

        vlm = open_vlm(model, device=device, dtype=dtype, cache_dir=load_settings().model_cache_dir)
        return LatentReasoner(vlm, config_for(vlm))

    return load
