"""``CancelToken``: a caller's cooperative "stop now" for one reasoning request.

A token is also a progress callback (it forwards events to the caller's own callback), so it
travels through :meth:`~riad_agent.protocols.Reasoner.reason` unchanged: any reasoner that reports
progress stops at its next event once the token is cancelled. :class:`LatentReasoner` checks it
more often: while waiting for the model's lock, after the prompt and the prefix, before every
forward of the latent loop (one per iteration), before the decode and before each decoded token
(:func:`stop_check`, the decode's ``should_stop``), so a cancelled request ends within about one
forward and releases the model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from riad_agent.errors import ReasoningCancelledError
from riad_agent.protocols import ProgressCallback

_LOCK_POLL_S = 0.05


class CancelToken:
    """Set once by whoever stopped waiting; :meth:`check` raises :class:`ReasoningCancelledError` after."""

    def __init__(self, forward: ProgressCallback | None = None) -> None:
        self.forward = forward
        self._event = threading.Event()
        self._why = ""

    def cancel(self, why: str = "the caller stopped waiting") -> None:
        """Ask the reasoner to stop at its next check (idempotent: the first reason is kept)."""
        if not self._event.is_set():
            self._why = why
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def error(self) -> ReasoningCancelledError:
        """The error a cancelled request ends with."""
        return ReasoningCancelledError(f"the reasoning was stopped: {self._why}")

    def check(self) -> None:
        """Raise :class:`ReasoningCancelledError` once cancelled."""
        if self._event.is_set():
            raise self.error()

    def __call__(self, event: dict[str, object]) -> None:
        """Progress callback: stop if cancelled, else pass the event on."""
        self.check()
        if self.forward is not None:
            self.forward(event)


def token_of(progress: ProgressCallback | None) -> CancelToken | None:
    """The cancel token a progress callback is, if it is one."""
    return progress if isinstance(progress, CancelToken) else None


def check(token: CancelToken | None) -> None:
    """:meth:`CancelToken.check` for an optional token."""
    if token is not None:
        token.check()


def stop_check(token: CancelToken | None) -> Callable[[], bool] | None:
    """A decode's ``should_stop`` for an optional token: True once it is cancelled."""
    if token is None:
        return None
    return lambda: token.cancelled


def acquire(lock: threading.Lock, token: CancelToken | None) -> None:
    """Take ``lock``, giving up with :class:`ReasoningCancelledError` if ``token`` is cancelled meanwhile."""
    if token is None:
        lock.acquire()
        return
    while not lock.acquire(timeout=_LOCK_POLL_S):
        token.check()
    if token.cancelled:
        lock.release()
        token.check()
