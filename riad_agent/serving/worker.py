"""``ModelWorker``: one thread owns the model; waiting requests are taken in batches of ``max_batch``.

Torch models are not safe to drive from many threads at once, so every request sharing a model goes
through this worker's thread. When several requests wait, the thread takes up to ``max_batch`` of
them and, if the reasoner can (:class:`BatchReasoner`, e.g. ``LatentReasoner.reason_batch``), runs
them together: fewer, larger forwards, each request getting the result it would get alone. It never
waits for a batch to fill: a lone request starts at once, and batches form from what queued up
while the previous batch ran. ``max_batch=1`` runs one request at a time.

The queue is bounded: a full queue raises :class:`~riad_agent.errors.QueueFullError` at once
(back-pressure, HTTP 429 with Retry-After) instead of letting latency grow without limit. A request
whose caller gave up is skipped if it has not started, and stopped at its next latent iteration if
it has (its progress callback raises); the rest of its batch carries on. A request that fails (a bad
image) fails alone.
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
from typing import Protocol, runtime_checkable

from riad_agent.errors import NotReadyError, QueueFullError, RiadError
from riad_agent.protocols import ProgressCallback, Reasoner, ReasoningInput, ReasoningResult

ReasonerSource = Reasoner | Callable[[], Reasoner]


@runtime_checkable
class BatchReasoner(Protocol):
    """A reasoner that can run several requests together (one result or exception per request)."""

    def reason_batch(
        self, requests: list[ReasoningInput], progress: list[ProgressCallback | None] | None = None
    ) -> list[ReasoningResult | Exception]: ...


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
    """A single model thread fed by a bounded queue (``max_queue`` waiting jobs besides the running batch)."""

    def __init__(self, source: ReasonerSource, max_queue: int = 8, max_batch: int = 4) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._source = source
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self.max_queue = max_queue
        self.max_batch = max_batch
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
        """Seconds a refused client should wait: the queue's expected drain time, at least one.

        ``_mean_s`` is the mean time per request (a batch's time over its size), so batching shows.
        """
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
        limit = self.max_batch if isinstance(reasoner, BatchReasoner) else 1
        while True:
            jobs, stop = self._take_batch(self._queue.get(), limit)
            if jobs:
                started = time.perf_counter()
                self._execute(reasoner, jobs)
                elapsed = (time.perf_counter() - started) / len(jobs)
                self._mean_s = 0.8 * self._mean_s + 0.2 * elapsed if self.completed else elapsed
                self.completed += len(jobs)
            if stop:
                return

    def _take_batch(self, first: Job | None, limit: int) -> tuple[list[Job], bool]:
        """``first`` and more jobs already waiting, up to ``limit`` live ones (cancelled ones are
        dropped on the way); True once the stop mark came."""
        jobs: list[Job] = []
        job = first
        while True:
            if job is None:
                return jobs, True
            if not job.cancelled.is_set() and job.future.set_running_or_notify_cancel():
                jobs.append(job)
            if len(jobs) >= limit:
                return jobs, False
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return jobs, False

    def _execute(self, reasoner: Reasoner, jobs: list[Job]) -> None:
        """Run the jobs (together when the reasoner batches) and settle every future."""
        if len(jobs) == 1 or not isinstance(reasoner, BatchReasoner):  # (several only for a BatchReasoner)
            for job in jobs:
                try:
                    job.future.set_result(reasoner.reason(job.request, _stop_if_cancelled(job)))
                except BaseException as exc:  # noqa: BLE001 - every failure goes to the waiting caller
                    job.future.set_exception(exc)
            return
        outcomes: list[ReasoningResult | Exception] | list[BaseException]
        try:
            outcomes = reasoner.reason_batch([job.request for job in jobs], [_stop_if_cancelled(job) for job in jobs])
        except BaseException as exc:  # noqa: BLE001 - a failure of the batch itself goes to every caller
            outcomes = [exc] * len(jobs)
        for job, outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)


def _stop_if_cancelled(job: Job) -> ProgressCallback:
    """A progress callback that stops ``job`` at its next iteration once its caller gave up."""

    def check(event: dict[str, object]) -> None:
        if job.cancelled.is_set():
            raise JobCancelled("the caller stopped waiting")

    return check
