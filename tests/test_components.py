"""Parts built lazily: a transient failure is retried after a while, a missing package is not."""

from __future__ import annotations

import pytest

from riad_agent.components import Lazy
from riad_agent.errors import BackendUnavailableError


def test_a_transient_failure_is_retried_after_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("riad_agent.components.time.monotonic", lambda: clock[0])
    calls = []

    def build() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise BackendUnavailableError("the store is held by another process")
        return "store"

    lazy = Lazy(build, "knowledge base", retry_after_s=30)
    for _ in range(2):
        with pytest.raises(BackendUnavailableError):
            lazy.get()
    assert len(calls) == 1  # remembered within the interval: no hammering
    clock[0] += 31
    assert lazy.get() == "store"
    assert len(calls) == 2


def test_a_missing_package_is_remembered_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr("riad_agent.components.time.monotonic", lambda: clock[0])
    calls = []

    def build() -> str:
        calls.append(1)
        raise ImportError("no module", name="qdrant_client")

    lazy = Lazy(build, "knowledge base")
    with pytest.raises(BackendUnavailableError, match="qdrant_client"):
        lazy.get()
    clock[0] += 3600
    with pytest.raises(BackendUnavailableError):
        lazy.get()
    assert len(calls) == 1
