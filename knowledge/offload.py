"""A helper thread that takes Python work off the caller while the caller waits on native code.

The hybrid search hands the sparse search (pure Python in embedded Qdrant) to this thread and runs
the query's MiniLM forward itself: onnxruntime drops the GIL for the whole forward, so on a machine
with a free core both go at once. A job the helper has not begun when the caller needs it is
cancelled and run by the caller, so a busy machine (helper not scheduled) costs no more than doing
the two one after the other.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
_Job = tuple[Callable[[], Any], "Future[Any]"]


class HelperThread:
    """One daemon thread running submitted callables in order (restarted if gone, e.g. after a fork)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure_running(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._jobs = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._loop, args=(self._jobs,), name=self.name, daemon=True
                )
                self._thread.start()

    @staticmethod
    def _loop(jobs: queue.SimpleQueue[_Job]) -> None:
        while True:
            fn, future = jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
                future.set_exception(exc)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Queue ``fn``; its result (or exception) comes through the future."""
        self._ensure_running()
        future: Future[T] = Future()
        self._jobs.put((fn, future))
        return future


def run_beside(helper: HelperThread, side: Callable[[], T], main: Callable[[], Any]) -> tuple[Any, T]:
    """``(main(), side())`` with ``side`` on the helper while ``main`` runs here.

    ``side`` runs here instead when the helper has not begun it by the time ``main`` is done. Either
    way it has finished when this returns, also when ``main`` raises.
    """
    job = helper.submit(side)
    try:
        first = main()
    except BaseException:
        if not job.cancel():
            job.exception()  # wait: nothing of this call keeps running behind the caller's back
        raise
    return first, side() if job.cancel() else job.result()
