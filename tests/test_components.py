"""Parts built lazily: a transient failure is retried after a while, a missing package is not; what a
reasoner is is known without loading it."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from riad_agent.components import Lazy, build_components
from riad_agent.errors import BackendUnavailableError
from riad_agent.explain import echoes_expert
from riad_agent.protocols import Reasoner
from riad_agent.settings import Settings


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


def test_whether_the_reasoner_only_repeats_the_expert_is_known_without_loading_it(tmp_path: Path) -> None:
    """The builtin model answers "any defect?" from the expert's evidence line: the graph does not run
    it for an unclear verdict. Known from the settings before any model loads, from the id once built."""
    from riad_agent.models.builtin.loading import BUILTIN_ID

    builtin = build_components(Settings(data_dir=tmp_path))
    assert builtin.reasoner_echoes_expert() and builtin.reasoner.peek() is None  # nothing was loaded
    assert echoes_expert(BUILTIN_ID) and not echoes_expert("Qwen/Qwen2.5-VL-7B-Instruct")
    hub = build_components(Settings(data_dir=tmp_path, vlm_model="Qwen/Qwen2.5-VL-7B-Instruct"))
    assert not hub.reasoner_echoes_expert()
    service = build_components(Settings(data_dir=tmp_path, reasoner_url="http://127.0.0.1:9"))
    assert not service.reasoner_echoes_expert()  # unknown without asking the service: it runs

    class Named:
        def __init__(self, model_id: str) -> None:
            self.model_id = model_id

    given = build_components(Settings(data_dir=tmp_path), reasoner=cast(Reasoner, Named(BUILTIN_ID)))
    assert given.reasoner_echoes_expert()
    other = build_components(Settings(data_dir=tmp_path), reasoner=cast(Reasoner, Named("fake-reasoner")))
    assert not other.reasoner_echoes_expert()
    # a service: judged by what a reply said of its model, never by a call made for it
    from riad_agent.serving.client import HttpReasoner

    remote = HttpReasoner("http://127.0.0.1:9", timeout_s=1.0)
    served = build_components(Settings(data_dir=tmp_path), reasoner=remote)
    assert not served.reasoner_echoes_expert()  # nothing said yet (and nothing was asked: port 9 is closed)
    remote.model_id = BUILTIN_ID  # as a reply sets it
    assert served.reasoner_echoes_expert()


def test_a_service_is_asked_its_model_once_when_it_decides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``ask`` (an unclear verdict the builtin could only echo) ``/readyz`` is asked once; a
    service that cannot say is not asked again within the interval, and counts as judging."""
    import httpx

    from riad_agent.models.builtin.loading import BUILTIN_ID
    from riad_agent.serving.client import HttpReasoner

    clock = [100.0]
    monkeypatch.setattr("riad_agent.serving.client.time.monotonic", lambda: clock[0])
    answers = [httpx.Response(503, json={"status": "loading", "ready": False})]
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return (
            answers[0]
            if answers
            else httpx.Response(200, json={"status": "ok", "ready": True, "model_id": BUILTIN_ID})
        )

    remote = HttpReasoner("http://reasoner.test", transport=httpx.MockTransport(handle))
    served = build_components(Settings(data_dir=tmp_path), reasoner=remote)
    assert not served.reasoner_echoes_expert() and calls == []  # without ask: never a call
    assert not served.reasoner_echoes_expert(ask=True) and calls == ["/readyz"]  # loading: it runs
    answers.clear()
    assert not served.reasoner_echoes_expert(ask=True) and len(calls) == 1  # not asked again yet
    clock[0] += 31
    assert served.reasoner_echoes_expert(ask=True) and len(calls) == 2
    assert served.reasoner_echoes_expert(ask=True) and len(calls) == 2  # known from then on
