"""The reasoner service: ``POST /v1/reason``, ``GET /healthz``, ``GET /readyz``.

:class:`ReasonerService` holds the request logic (auth, admission, body limit, parsing, timeout,
disconnects, typed errors) independently of the web framework, so the FastAPI app of
:func:`create_app` and the Ray Serve deployment (``riad_agent.serving.ray_app``) answer identically.
A request takes its place in the queue before its body is read (a full queue answers 429 without
reading it, and bodies in flight never outnumber the free places); at most ``max_bodies`` bodies
are parsed and decoded at once. A job whose client
went away or timed out is cancelled (it stops within one latent iteration). :class:`BackgroundServer`
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
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from riad_agent.errors import (
    BodyTooLargeError,
    ConfigurationError,
    InvalidRequestError,
    NotReadyError,
    QueueFullError,
    ReasonerTimeoutError,
    ReasoningCancelledError,
    RiadError,
    ServiceError,
    UnauthorizedError,
    first_problem,
)
from riad_agent.protocols import Reasoner, ReasoningInput, ReasoningResult
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
from riad_agent.serving.worker import Job, ModelWorker, ReasonerSource

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
    max_bodies: int = 2  # request bodies parsed and decoded at once (each reads only after admission)
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
        self._decoding = asyncio.Semaphore(max(1, config.max_bodies))
        self.refused = 0  # requests answered 429 (queue full)

    def start(self) -> None:
        self.worker.start()

    def close(self) -> None:
        self.worker.close()

    async def drain(self, drain_s: float, hurry: Callable[[], bool] = lambda: False) -> None:
        """Shutdown, first part: refuse new requests, give those in flight ``drain_s`` seconds (less
        once ``hurry()`` holds), then cancel them (each answers 503 within about one latent iteration)."""
        self.worker.stop_accepting()
        deadline = time.monotonic() + drain_s
        while (self.worker.queued or self.worker.running) and time.monotonic() < deadline and not hurry():
            await asyncio.sleep(0.05)
        self.worker.cancel_all()

    def _headers(self) -> dict[str, str]:
        return {REPLICA_HEADER: self.config.replica} if self.config.replica else {}

    def _error(self, error: RiadError, extra: dict[str, str] | None = None) -> Reply:
        return Reply(status_for(error), error_body(error), {**self._headers(), **(extra or {})})

    def _refuse(self, error: ServiceError) -> Reply:
        """A refusal of the service itself, with the header that tells the client what to do next."""
        extra: dict[str, str] = {}
        if isinstance(error, QueueFullError):
            self.refused += 1
            extra["Retry-After"] = str(self.worker.retry_after_s())
        elif isinstance(error, UnauthorizedError):
            extra["WWW-Authenticate"] = "Bearer"
        return self._error(error, extra)

    def authorised(self, authorization: str | None) -> bool:
        """Whether the ``Authorization`` header carries the configured bearer token (always, without one)."""
        if not self.config.token:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.config.token.encode()
        )

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
            precision=worker.precision,
            replica=self.config.replica,
            queued=worker.queued,
            running=worker.running,
            max_queue=worker.max_queue,
            completed=worker.completed,
            cancelled=worker.cancelled,
            refused=self.refused,
            detail=detail,
        )

    async def reason(
        self,
        authorization: str | None,
        read_body: Callable[[int], Awaitable[bytes]],
        disconnected: Callable[[], Awaitable[None]] | None = None,
    ) -> Reply:
        """Handle ``POST /v1/reason``.

        ``read_body(limit)`` returns the body or raises BodyTooLargeError; it is called only once
        the queue has a place for the request. ``disconnected()``, when given, returns once the
        client has gone away; the job is then cancelled.
        """
        started = time.perf_counter()
        if not self.authorised(authorization):
            return self._refuse(
                UnauthorizedError("a valid bearer token is required: send 'Authorization: Bearer <token>'")
            )
        try:
            self.worker.reserve()  # queue full or not ready: refused before a byte of the body is read
        except ServiceError as exc:
            return self._refuse(exc)
        try:
            request = await self._read_request(read_body)
            job = self.worker.submit(request, reserved=True)
        except ServiceError as exc:  # body too large, shutting down
            self.worker.release()
            return self._refuse(exc)
        except RiadError as exc:
            self.worker.release()
            return self._error(exc)
        except BaseException:
            self.worker.release()
            raise
        remaining = self.config.timeout_s - (time.perf_counter() - started)
        return await self._await_job(job, max(remaining, 0.001), disconnected)

    async def _read_request(self, read_body: Callable[[int], Awaitable[bytes]]) -> ReasoningInput:
        """Read one body (only admitted requests read, so bodies in flight are bounded by the free
        places in the queue), then parse and decode it (at most ``max_bodies`` at once)."""
        raw = await read_body(self.config.limits.max_body_bytes)
        async with self._decoding:
            try:
                body = WireRequest.model_validate_json(raw)
            except ValidationError as exc:
                where, problem = first_problem(exc)
                raise InvalidRequestError(f"invalid request field {where}: {problem}") from exc
            del raw
            return await asyncio.to_thread(decode_input, body, self.config.limits)

    async def _await_job(
        self, job: Job, timeout_s: float, disconnected: Callable[[], Awaitable[None]] | None
    ) -> Reply:
        """The job's answer; a timeout (504), a disconnect or a cancelled handler cancels the job."""
        answer: asyncio.Future[ReasoningResult] = asyncio.wrap_future(job.future)
        gone = asyncio.ensure_future(disconnected()) if disconnected is not None else None
        waits: list[asyncio.Future[Any]] = [answer] if gone is None else [answer, gone]
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server stops, or the framework dropped the request
            job.cancel("the request was abandoned")
            answer.cancel()  # (its outcome is nobody's now)
            raise
        finally:
            if gone is not None:
                gone.cancel()
        if answer not in done:
            answer.cancel()
            if gone is not None and gone in done:
                job.cancel("the client disconnected")  # its answer is never delivered: 499, as nginx logs it
                gone_error = ReasoningCancelledError("the client disconnected; its request was stopped")
                return Reply(499, error_body(gone_error), self._headers())
            job.cancel(f"no answer within the service timeout of {self.config.timeout_s:g} s")
            return self._error(
                ReasonerTimeoutError(
                    f"the reasoner did not answer within the service timeout of {self.config.timeout_s:g} s"
                )
            )
        try:
            result = answer.result()
        except ReasoningCancelledError as exc:  # stopped by the service's shutdown
            return self._refuse(NotReadyError(f"the reasoner service is shutting down ({exc.message})"))
        except RiadError as exc:
            return self._error(exc)
        except Exception as exc:  # noqa: BLE001 - a model bug must not kill the service
            return Reply(
                500,
                {
                    "error": {
                        "code": "internal",
                        "message": f"the reasoner failed: {type(exc).__name__}: {exc}",
                    }
                },
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


async def wait_disconnect(request: Request) -> None:
    """Return once the client of ``request`` has gone away (call it after the body was read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


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
        reply = await service.reason(
            request.headers.get("authorization"),
            lambda limit: read_limited(request, limit),
            lambda: wait_disconnect(request),
        )
        return _respond(reply)

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
            uvicorn.Config(
                app, host=host, port=self.port, log_level="warning", lifespan="on", access_log=False
            )
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
    """A loader for the tiny random Qwen2-VL reasoner (tests, demos; answers at random).

    Its reward is flat (random weights), so it runs every requested iteration (no plateau stop): a
    request of T steps costs T iterations, as load, cancel and drain checks expect of a real model.
    """

    def load() -> Reasoner:
        from riad_agent.models.tiny import build_tiny_qwen2_vl
        from riad_agent.reasoning import LatentConfig, LatentReasoner

        return LatentReasoner(build_tiny_qwen2_vl(device=device), LatentConfig(plateau_patience=0))

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

        settings = load_settings()
        vlm = open_vlm(
            model,
            device=device,
            dtype=dtype,
            cache_dir=settings.model_cache_dir,
            max_pixels=settings.vlm_max_pixels,
        )
        return LatentReasoner(vlm, config_for(vlm))

    return load
