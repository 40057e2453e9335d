"""``HttpReasoner``: the :class:`~riad_agent.protocols.Reasoner` protocol over the reasoner service.

The inspection graph uses it when ``RIAD_REASONER_URL`` is set. Connection failures, 502 and 503
are retried with exponential back-off; 429 (queue full) is retried as often as the service's
``Retry-After`` fits before the caller's deadline (``timeout_s``, queueing included), and refused at
once, saying so, when the advertised wait would pass it. A circuit breaker stops calling a service
that keeps failing and tries again after a cool-down.
Every failure becomes :class:`~riad_agent.errors.BackendUnavailableError` or
:class:`~riad_agent.errors.ReasonerTimeoutError`, which the graph turns into an expert-only report.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import httpx
from pydantic import ValidationError

from riad_agent import errors
from riad_agent.errors import BackendUnavailableError, ReasonerTimeoutError, RiadError
from riad_agent.protocols import ProgressCallback, ReasoningInput, ReasoningResult
from riad_agent.serving.wire import REPLICA_HEADER, Health, WireResponse, decode_result, encode_input

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Open after ``threshold`` consecutive failed calls; let one trial call through after ``cooldown_s``."""

    def __init__(
        self, threshold: int = 5, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.threshold, self.cooldown_s, self._clock = threshold, cooldown_s, clock
        self._lock = threading.Lock()
        self.failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def before_call(self, what: str) -> None:
        """Raise :class:`BackendUnavailableError` at once while open (or while a half-open trial runs)."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return
            if state == "half_open" and not self._trial:
                self._trial = True
                return
            assert self._opened_at is not None
            wait = max(0.0, self.cooldown_s - (self._clock() - self._opened_at))
            raise BackendUnavailableError(
                f"{what} failed {self.failures} times in a row; not calling it for another {wait:.0f} s "
                "(circuit breaker open)"
            )

    def success(self) -> None:
        with self._lock:
            self.failures, self._opened_at, self._trial = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self._trial or self.failures >= self.threshold:
                self._opened_at = self._clock()
            self._trial = False


def _error_classes() -> dict[str, type[RiadError]]:
    found: dict[str, type[RiadError]] = {}
    pending: list[type[RiadError]] = [RiadError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


def _message(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from an error response, tolerating bodies that are not ours."""
    try:
        payload: Any = response.json()
        body = payload["error"]
        return str(body["code"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        text = " ".join(response.text.split())[:200]
        return "", text or response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class HttpReasoner:
    """A remote reasoner: ``reason()`` posts to ``{url}/v1/reason``; ``model_id`` comes from ``/readyz``."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout_s: float = 120.0,
        *,
        retries: int = 3,
        busy_retries: int | None = None,
        backoff_s: float = 0.25,
        max_backoff_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        breaker_threshold: int = 5,
        breaker_cooldown_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise errors.ConfigurationError("reasoner_timeout_s must be positive")
        if not url.startswith(("http://", "https://")):
            raise errors.ConfigurationError(
                f"reasoner_url {url!r} must start with http:// or https:// (e.g. http://127.0.0.1:8700)"
            )
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        # None: bounded by the deadline
        self.busy_retries = None if busy_retries is None else max(0, busy_retries)
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.connect_timeout_s = connect_timeout_s
        self.breaker = CircuitBreaker(breaker_threshold, breaker_cooldown_s)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(headers=headers, transport=transport, follow_redirects=False)
        self._model_id: str | None = None
        self._model_id_refused_at: float | None = None
        self.last_replica: str = ""
        self.attempts = 0
        self._count_lock = threading.Lock()

    # --- protocol ---------------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        """The served model's id, asked of ``/readyz`` on first use."""
        if self._model_id is None:
            self._model_id = self._ask_model_id()
        return self._model_id

    @model_id.setter
    def model_id(self, value: str) -> None:
        self._model_id = value

    @property
    def known_model_id(self) -> str | None:
        """The served model's id if a reply or ``/readyz`` already said it; never asks."""
        return self._model_id

    def ask_model_id(self, retry_after_s: float = 30.0) -> str | None:
        """The served model's id, asking ``/readyz`` when no reply has said it yet; None when the
        service cannot say (unreachable, loading), and then not asked again for ``retry_after_s``."""
        if self._model_id is None:
            refused = self._model_id_refused_at
            if refused is not None and time.monotonic() - refused < retry_after_s:
                return None
            try:
                self._model_id = self._ask_model_id()
            except BackendUnavailableError:
                self._model_id_refused_at = time.monotonic()
                return None
        return self._model_id

    def reason(self, request: ReasoningInput, progress: ProgressCallback | None = None) -> ReasoningResult:
        """Send one request to the service; typed errors only (see the module docstring)."""
        self.breaker.before_call(f"the reasoner service at {self.url}")
        body = encode_input(request).model_dump_json().encode()
        try:
            response = self._post(body, time.monotonic() + self.timeout_s)
        except BackendUnavailableError:  # includes ReasonerTimeoutError
            self.breaker.failure()
            raise
        except RiadError:
            self.breaker.success()  # the service answered: the request itself was refused
            raise
        self.breaker.success()
        self._model_id = response.model_id
        self.last_replica = response.replica
        result = decode_result(response)
        if progress is not None:
            for iteration in result.trace.iterations:
                progress(
                    {
                        "stage": "latent",
                        "iteration": iteration.step,
                        "reward": iteration.reward,
                        "remote": True,
                    }
                )
        return result

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpReasoner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport --------------------------------------------------------------------------------

    def _ask_model_id(self) -> str:
        try:
            response = self._client.get(f"{self.url}/readyz", timeout=min(self.timeout_s, 10.0))
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(f"cannot reach the reasoner service at {self.url}: {exc}") from exc
        try:
            health = Health.model_validate_json(response.content)
        except ValidationError as exc:
            raise BackendUnavailableError(
                f"the reasoner service at {self.url} sent an invalid /readyz answer (HTTP {response.status_code})"
            ) from exc
        if not health.ready or not health.model_id:
            raise BackendUnavailableError(
                f"the reasoner service at {self.url} is not ready ({health.status}) {health.detail}".strip()
            )
        return health.model_id

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:  # a little later than told, so refused clients do not all return at once
            return retry_after * random.uniform(1.0, 1.1)
        base = min(self.max_backoff_s, self.backoff_s * (2**attempt))
        return base * random.uniform(0.5, 1.0)

    def _post(self, body: bytes, deadline: float) -> WireResponse:
        """POST within ``deadline``: up to ``retries`` retries after connection errors and 502/503, and
        after 429 (the service is healthy but its queue is full) as long as its Retry-After fits
        before the deadline (and at most ``busy_retries`` times when set)."""
        failures = busy = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ReasonerTimeoutError(
                    f"the reasoner service at {self.url} did not answer within {self.timeout_s:g} s"
                )
            outcome, retry_after, queue_full = self._attempt(body, remaining)
            if isinstance(outcome, WireResponse):
                return outcome
            if queue_full:
                busy += 1
                if self.busy_retries is not None and busy > self.busy_retries:
                    raise outcome
                delay = self._delay(min(busy - 1, 4), retry_after)
                if retry_after is not None and time.monotonic() + retry_after >= deadline:
                    raise BackendUnavailableError(
                        f"{outcome.message}; the service expects a place in {retry_after:g} s, past this "
                        f"client's timeout of {self.timeout_s:g} s (RIAD_REASONER_TIMEOUT_S)"
                    )
            else:
                failures += 1
                if failures > self.retries:
                    raise outcome
                delay = self._delay(failures - 1, retry_after)
            if time.monotonic() + delay >= deadline:
                raise outcome
            time.sleep(delay)

    def _attempt(
        self, body: bytes, remaining: float
    ) -> tuple[WireResponse | BackendUnavailableError, float | None, bool]:
        """One POST: the response, or a retryable failure with its Retry-After and whether it was a
        429; raises the rest."""
        with self._count_lock:
            self.attempts += 1
        timeout = httpx.Timeout(remaining, connect=min(self.connect_timeout_s, remaining))
        where = f"the reasoner service at {self.url}"
        try:
            response = self._client.post(
                f"{self.url}/v1/reason",
                content=body,
                headers={"Content-Type": "application/json"},
                timeout=timeout,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return BackendUnavailableError(f"cannot connect to {where}: {exc}"), None, False
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout) as exc:
            raise ReasonerTimeoutError(f"{where} did not answer within {self.timeout_s:g} s") from exc
        except httpx.TransportError as exc:  # connection dropped mid-request, protocol errors
            return (
                BackendUnavailableError(f"the connection to {where} broke: {type(exc).__name__}: {exc}"),
                None,
                False,
            )
        status = response.status_code
        if status == 200:
            try:
                parsed = WireResponse.model_validate_json(response.content)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise BackendUnavailableError(
                    f"{where} returned an invalid response ({first['type']} at "
                    f"{'.'.join(str(p) for p in first['loc']) or 'body'}); is the URL a riad reasoner service?"
                ) from exc
            self.last_replica = response.headers.get(REPLICA_HEADER, parsed.replica)
            return parsed, None, False
        code, message = _message(response)
        if status in (429, 502, 503):
            failure = BackendUnavailableError(f"{where} is busy or unavailable (HTTP {status}): {message}")
            return failure, _retry_after(response), status == 429
        if status == 504:
            raise ReasonerTimeoutError(f"{where} timed out: {message}")
        if status in (401, 403):
            raise BackendUnavailableError(
                f"{where} refused the token (HTTP {status}); set RIAD_REASONER_TOKEN"
            )
        known = _error_classes().get(code)
        if 400 <= status < 500 and known is not None:
            raise known(f"{where} refused the request (HTTP {status}): {message}")
        raise BackendUnavailableError(f"{where} failed (HTTP {status}): {message}")
