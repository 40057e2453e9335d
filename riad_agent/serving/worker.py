"""``ModelWorker``: one thread owns the model; requests wait in a bounded queue and run one at a time.

Torch models are not safe to drive from many threads at once, and a GPU gains nothing from it, so
every request sharing a model is serialised through this worker. The queue is bounded: a full
queue raises :class:`~riad_agent.errors.QueueFullError` at once (back-pressure, HTTP 429)
instead of letting latency grow without limit. A request whose caller gave up is skipped if it has
not started, and stopped at the next latent iteration if it has (the progress callback raises).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from riad_agent.errors import NotReadyError, QueueFullError, RiadError
from riad_agent.protocols import Reasoner, ReasoningInput, ReasoningResult

ReasonerSource = Reasoner | Callable[[], Reasoner]


class JobCancelled(Exception):
    """Raised inside the reasoner's progress callback when the caller stopped waiting."""


@dataclass
class Job:
    """One queued reasoning request and the future its caller awaits."""

    request: ReasoningInput
    future: concurrent.futures.Future[ReasoningResult] = field(default_factory=concurrent.futures.Future)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Stop waiting: skip the job if queued, stop it at its next iteration if running."""
        self.cancelled.set()
        self.future.cancel()


class ModelWorker:
    """A single model thread fed by a bounded queue (``max_queue`` waiting jobs besides the running one)."""

    def __init__(self, source: ReasonerSource, max_queue: int = 8) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self._source = source
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self.max_queue = max_queue
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.reasoner: Reasoner | None = source if isinstance(source, Reasoner) else None
        self.load_error: str | None = None
        self._mean_s = 1.0
        self.completed = 0

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread (it loads the model first when given a loader)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="riad-model-worker", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Cancel waiting jobs and stop the thread after the running one."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(NotReadyError("the reasoner service is shutting down"))
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=timeout_s)
            self._thread.join(timeout_s)
            self._thread = None

    def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Block until the model is loaded (or failed); True when ready."""
        self._ready.wait(timeout_s)
        return self.ready

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self.reasoner is not None

    @property
    def model_id(self) -> str | None:
        return self.reasoner.model_id if self.reasoner is not None else None

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def retry_after_s(self) -> int:
        """Seconds a refused client should wait: the queue's expected drain time, at least one."""
        return max(1, math.ceil(self._mean_s * max(1, self.queued)))

    # --- submitting -------------------------------------------------------------------------------

    def submit(self, request: ReasoningInput) -> Job:
        """Queue a request or raise :class:`QueueFullError` / :class:`NotReadyError` at once."""
        if not self.ready:
            raise NotReadyError(self.load_error or "the reasoner model is still loading; retry shortly")
        job = Job(request)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFullError(
                f"the reasoner queue is full ({self.max_queue} waiting); retry after {self.retry_after_s()} s"
            ) from None
        return job

    # --- the thread -------------------------------------------------------------------------------

    def _load(self) -> bool:
        if self.reasoner is None:
            try:
                self.reasoner = self._source()  # type: ignore[operator]
            except RiadError as exc:
                self.load_error = f"the reasoner model failed to load: {exc.one_line()}"
            except Exception as exc:  # noqa: BLE001 - reported through /readyz, never raised into a request
                self.load_error = f"the reasoner model failed to load: {type(exc).__name__}: {exc}"
        self._ready.set()
        return self.reasoner is not None

    def _run(self) -> None:
        if not self._load():
            return
        reasoner = self.reasoner
        assert reasoner is not None
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.cancelled.is_set() or not job.future.set_running_or_notify_cancel():
                continue

            def stop_if_cancelled(event: dict[str, object], job: Job = job) -> None:
                if job.cancelled.is_set():
                    raise JobCancelled("the caller stopped waiting")

            started = time.perf_counter()
            try:
                result = reasoner.reason(job.request, stop_if_cancelled)
            except BaseException as exc:  # noqa: BLE001 - every failure goes to the waiting caller
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)
            elapsed = time.perf_counter() - started
            self._mean_s = 0.8 * self._mean_s + 0.2 * elapsed if self.completed else elapsed
            self.completed += 1
