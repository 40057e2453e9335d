"""A real in-process reasoner slower than ``reasoner_timeout_s`` is stopped, not abandoned (issue 17, item 6).

The tiny random Qwen2-VL runs a 200-step loop under a short timeout; the node must degrade to
``reasoner_timeout`` and tell the reasoner to stop, so its thread ends within about one iteration,
releases the model's lock and the next call on the same reasoner is answered; what the reasoner
still reports after the node has ended does not reach the stream.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from support.fakes import FakeExpert, FakeKnowledge
from support.tiny_models import build_tiny_qwen2_vl

from riad_agent.components import build_components
from riad_agent.graphs import nodes
from riad_agent.inspector import Inspector
from riad_agent.reasoning import LatentConfig, LatentReasoner
from riad_agent.reasoning.cancel import CancelToken
from riad_agent.settings import Settings

torch.set_num_threads(1)
STEPS = 200


class _CountedForwards:
    """Counts the latent loop's forwards of a tiny VLM (one per iteration, plus the final evaluation).

    Each forward also takes at least 20 ms, so 200 steps need 4 s or more on any machine: far
    beyond the 0.5 s timeout however fast the tiny model runs.
    """

    def __init__(self, reasoner: LatentReasoner) -> None:
        self.count = 0
        vlm: Any = reasoner.vlm
        forward = vlm.suffix_forward

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            time.sleep(0.02)
            return forward(*args, **kwargs)

        vlm.suffix_forward = counted


def _reasoner() -> LatentReasoner:
    return LatentReasoner(
        build_tiny_qwen2_vl(seed=3),
        LatentConfig(reward_threshold=1.0, plateau_patience=0, injection_rounds=0),
    )


def _inspector(tmp_path: Path, reasoner: LatentReasoner, timeout_s: float) -> Inspector:
    settings = Settings(data_dir=tmp_path / "data", reasoner_timeout_s=timeout_s)
    return Inspector(
        components=build_components(
            settings, knowledge=FakeKnowledge(), expert=FakeExpert(), reasoner=reasoner
        )
    )


def _request(image: Path, steps: int) -> dict[str, Any]:
    return {"image": str(image), "options": {"use_knowledge": False, "latent_steps": steps}}


def _wait_free(reasoner: LatentReasoner, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not reasoner._lock.acquire(timeout=0.05):
        assert time.monotonic() < deadline, "the reasoner's lock was never released"
    reasoner._lock.release()


def test_sync_inspection_stops_the_loop_at_the_timeout(tmp_path: Path, images: dict[str, Path]) -> None:
    reasoner = _reasoner()
    forwards = _CountedForwards(reasoner)
    report = _inspector(tmp_path, reasoner, timeout_s=0.5).inspect(_request(images["bad"], STEPS))
    assert "reasoner_timeout" in report.degraded and report.trace is None
    _wait_free(reasoner)
    stopped_at = forwards.count
    assert 0 < stopped_at < STEPS // 2  # stopped, not run to the end behind the report's back
    time.sleep(0.3)
    assert forwards.count == stopped_at  # and nothing runs on afterwards


async def test_abandoned_reasoner_frees_the_model_for_the_next_call(
    tmp_path: Path, images: dict[str, Path]
) -> None:
    reasoner = _reasoner()
    forwards = _CountedForwards(reasoner)
    slow = await _inspector(tmp_path, reasoner, timeout_s=0.5).ainspect(_request(images["bad"], STEPS))
    assert "reasoner_timeout" in slow.degraded
    # the next call on the same reasoner, with no steps: answered, not stuck behind the abandoned loop
    quick = await _inspector(tmp_path, reasoner, timeout_s=60.0).ainspect(_request(images["bad"], 0))
    assert quick.trace is not None and "reasoner_timeout" not in quick.degraded
    assert forwards.count < STEPS // 2


class _LateToken(CancelToken):
    """A token whose progress events are held until the node has timed out (as if the reasoner's
    thread had passed the check just before the cancel), then passed on."""

    def __call__(self, event: dict[str, object]) -> None:
        self.check()
        self._event.wait(timeout=30)
        if self.forward is not None:
            self.forward(event)


async def test_no_progress_reaches_the_stream_after_the_timeout(
    tmp_path: Path, images: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    streamed: list[dict[str, Any]] = []
    monkeypatch.setattr(nodes, "get_stream_writer", lambda: streamed.append)
    monkeypatch.setattr(nodes, "CancelToken", _LateToken)
    reasoner = _reasoner()
    forwards = _CountedForwards(reasoner)
    report = await _inspector(tmp_path, reasoner, timeout_s=0.5).ainspect(_request(images["bad"], STEPS))
    assert "reasoner_timeout" in report.degraded
    _wait_free(reasoner)
    await asyncio.sleep(0.2)  # the loop runs whatever the reasoner's thread queued for it
    assert forwards.count >= 1  # the reasoner did report an iteration, after the timeout
    assert [event for event in streamed if "iteration" in event] == []
