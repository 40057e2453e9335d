"""``ModelWorker``: one thread owns the model; waiting requests are taken in batches of ``max_batch``.

Torch models are not safe to drive from many threads at once, so every request sharing a model goes
through this worker's thread. When several requests wait, the thread takes up to ``max_batch`` of
them and, if the reasoner can (:class:`BatchReasoner`, e.g. ``LatentReasoner.reason_batch``), runs
them together: fewer, larger forwards, each request getting the result it would get alone. It never
waits for a batch to fill: a lone request starts at once, and batches form from what queued up
while the previous batch ran. ``max_batch=1`` runs one request at a time.

The queue is bounded: a full queue raises :class:`~riad_agent.errors.QueueFullError` at once
(back-pressure, HTTP 429 with Retry-After) instead of letting latency grow without limit. A caller
may :meth:`~ModelWorker.reserve` a place before it has even read its request (the service does, so
a full queue refuses a body it never reads). Each job carries a
:class:`~riad_agent.reasoning.cancel.CancelToken` as its progress callback: a job whose caller gave
up is skipped if it has not started, and stopped within about one latent iteration if it has; the
rest of its batch carries on. A request that fails (a bad image) fails alone. :meth:`close` fails
the waiting jobs, cancels the running ones and waits for the thread to end, so no model work
outlives the process's shutdown.
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

from riad_agent.errors import NotReadyError, QueueFullError, ReasoningCancelledError, RiadError
from riad_agent.protocols import ProgressCallback, Reasoner, ReasoningInput, ReasoningResult
from riad_agent.reasoning.cancel import CancelToken

ReasonerSource = Reasoner | Callable[[], Reasoner]


@runtime_checkable
class BatchReasoner(Protocol):
    """A reasoner that can run several requests together (one result or exception per request)."""

    def reason_batch(
        self, requests: list[ReasoningInput], progress: list[ProgressCallback | None] | None = None
    ) -> list[ReasoningResult | Exception]: ...


@dataclass
class Job:
    """One queued reasoning request, the future its caller awaits and the token that stops it."""

    request: ReasoningInput
    future: concurrent.futures.Future[ReasoningResult] = field(default_factory=concurrent.futures.Future)
    token: CancelToken = field(default_factory=CancelToken)

    @property
    def steps(self) -> int:
        return self.request.latent_steps

    @property
    def cancelled(self) -> bool:
        return self.token.cancelled

    def cancel(self, why: str = "the caller stopped waiting") -> None:
        """Stop the job: skipped if still queued, stopped within one latent iteration if running.

        Its future then ends with :class:`~riad_agent.errors.ReasoningCancelledError`.
        """
        self.token.cancel(why)


class ModelWorker:
    """A single model thread fed by a bounded queue (``max_queue`` waiting jobs besides the running batch)."""

    def __init__(
        self,
        source: ReasonerSource,
        max_queue: int = 8,
        max_batch: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._source = source
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue + 1)  # + the stop mark
        self.max_queue = max_queue
        self.max_batch = max_batch
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.reasoner: Reasoner | None = source if isinstance(source, Reasoner) else None
        self.load_error: str | None = None
        self.completed = 0
        self.cancelled = 0  # jobs that ended because their caller gave up (or the service stopped)
        self._lock = threading.Lock()  # guards the counters below
        self._reserved = 0  # places promised to callers still reading their request
        self._closing = False
        self._running: list[Job] = []
        self._batch_started = 0.0
        self._step_s: float | None = (
            None  # measured seconds per latent step of a batch (incl. prefix and decode)
        )

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread (it loads the model first when given a loader)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="riad-model-worker", daemon=True)
            self._thread.start()

    def stop_accepting(self) -> None:
        """Refuse new jobs (:class:`NotReadyError`, 'shutting down'); queued and running ones go on."""
        with self._lock:
            self._closing = True

    def cancel_all(self) -> None:
        """Refuse new jobs, fail the waiting ones and cancel the running ones (they stop within one iteration)."""
        self.stop_accepting()
        with self._lock:
            running = list(self._running)
        for job in running:
            job.cancel("the reasoner service is shutting down")
        while True:
            try:
                waiting = self._queue.get_nowait()
            except queue.Empty:
                break
            if waiting is not None and waiting.future.set_running_or_notify_cancel():
                waiting.future.set_exception(NotReadyError("the reasoner service is shutting down"))

    def close(self, timeout_s: float = 120.0) -> None:
        """:meth:`cancel_all`, then wait (up to ``timeout_s``) for the thread to end. Idempotent.

        Cancellation is cooperative, so the wait is about one latent iteration, or the model's load
        when it is still loading.
        """
        self.cancel_all()
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
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
    def precision(self) -> str | None:
        """The language model's precision ('float32', 'bfloat16', 'int8'), None before it loads."""
        vlm = getattr(self.reasoner, "vlm", None)
        precision = getattr(vlm, "precision", None)
        return precision if isinstance(precision, str) else None

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def retry_after_s(self) -> int:
        """Seconds until a place frees in a full queue: the expected rest of the running batch, at least one.

        The running batch's expected duration is the measured time per latent step (a batch's time
        over its longest request's steps + 1, which covers prefix and decode) times its own steps + 1;
        once it ends, the next batch takes up to ``max_batch`` waiting jobs and frees their places.
        """
        with self._lock:
            return self._retry_after()

    def _retry_after(self) -> int:
        """:meth:`retry_after_s`, called under the lock."""
        if not self._running:
            return 1
        steps = max(job.steps for job in self._running)
        expected = (self._step_s if self._step_s is not None else 1.0) * (steps + 1)
        return max(1, math.ceil(expected - (self._clock() - self._batch_started)))

    # --- submitting -------------------------------------------------------------------------------

    def reserve(self) -> None:
        """Promise a place in the queue to a caller that has not read its request yet.

        Raises :class:`NotReadyError` / :class:`QueueFullError` at once; pass ``reserved=True`` to
        :meth:`submit` to use the place, or :meth:`release` it.
        """
        with self._lock:
            self._admit()
            self._reserved += 1

    def release(self) -> None:
        """Give back a place taken by :meth:`reserve` that will not be used."""
        with self._lock:
            self._reserved = max(0, self._reserved - 1)

    def submit(self, request: ReasoningInput, reserved: bool = False) -> Job:
        """Queue a request (in the place :meth:`reserve` promised, if ``reserved``) or raise at once."""
        job = Job(request)
        with self._lock:
            if reserved:
                if self._closing:  # (the place stays reserved: the caller releases it)
                    raise NotReadyError("the reasoner service is shutting down")
                self._reserved = max(0, self._reserved - 1)
            else:
                self._admit()
            self._queue.put_nowait(job)  # never full: places are counted under the lock
        return job

    def _admit(self) -> None:
        """Raise unless a new job may wait (called under the lock)."""
        if self._closing:
            raise NotReadyError("the reasoner service is shutting down")
        if not self.ready:
            raise NotReadyError(self.load_error or "the reasoner model is still loading; retry shortly")
        if self._queue.qsize() + self._reserved >= self.max_queue:
            raise QueueFullError(
                f"the reasoner queue is full ({self.max_queue} waiting); retry after {self._retry_after()} s"
            )

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
                with self._lock:
                    self._running, self._batch_started = jobs, self._clock()
                self._execute(reasoner, jobs)
                with self._lock:
                    elapsed = self._clock() - self._batch_started
                    self._running = []
                    per_step = elapsed / (max(job.steps for job in jobs) + 1)
                    self._step_s = per_step if self._step_s is None else 0.7 * self._step_s + 0.3 * per_step
                    stopped = sum(isinstance(job.future.exception(), ReasoningCancelledError) for job in jobs)
                    self.cancelled += stopped
                    self.completed += len(jobs) - stopped
            if stop:
                return

    def _take_batch(self, first: Job | None, limit: int) -> tuple[list[Job], bool]:
        """``first`` and more jobs already waiting, up to ``limit`` live ones (cancelled ones end
        with their cancellation on the way); True once the stop mark came."""
        jobs: list[Job] = []
        job = first
        while True:
            if job is None:
                return jobs, True
            if not job.future.set_running_or_notify_cancel():
                self.cancelled += 1
            elif job.cancelled:
                job.future.set_exception(job.token.error())
                self.cancelled += 1
            else:
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
                    job.future.set_result(reasoner.reason(job.request, job.token))
                except BaseException as exc:  # noqa: BLE001 - every failure goes to the waiting caller
                    job.future.set_exception(exc)
            return
        outcomes: list[ReasoningResult | Exception] | list[BaseException]
        try:
            outcomes = reasoner.reason_batch([job.request for job in jobs], [job.token for job in jobs])
        except BaseException as exc:  # noqa: BLE001 - a failure of the batch itself goes to every caller
            outcomes = [exc] * len(jobs)
        for job, outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
