"""Cooperative cancellation of ``LatentReasoner`` with a ``CancelToken`` (issue 17, item 6)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import torch
from support.tiny_models import build_tiny_qwen2_vl, noise_image

from riad_agent.errors import ReasoningCancelledError
from riad_agent.protocols import ReasoningInput, ReasoningResult
from riad_agent.reasoning import LatentConfig, LatentReasoner
from riad_agent.reasoning.cancel import CancelToken
from riad_agent.schemas import MultipleChoiceQuestion

torch.set_num_threads(1)
QUESTION = MultipleChoiceQuestion(text="Is there any defect?", options={"A": "Yes.", "B": "No."})


@pytest.fixture(scope="module")
def reasoner() -> LatentReasoner:
    return LatentReasoner(build_tiny_qwen2_vl(seed=5), LatentConfig(reward_threshold=1.0, plateau_patience=0))


def _request(steps: int, seed: int = 0) -> ReasoningInput:
    return ReasoningInput(
        image=noise_image(48, 48, seed=seed),
        question=QUESTION,
        patch_prior=np.random.default_rng(seed).random((8, 8)).astype(np.float32),
        latent_steps=steps,
        latent_tokens=2,
        seed=seed,
    )


def _cancel_at(iteration: int, events: list[dict[str, object]]) -> CancelToken:
    """A token whose own forwarded progress cancels it once ``iteration`` has been reported."""
    token = CancelToken()

    def record(event: dict[str, object]) -> None:
        events.append(event)
        if event["iteration"] == iteration:
            token.cancel("test")

    token.forward = record
    return token


def _count_forwards(reasoner: LatentReasoner) -> list[int]:
    vlm: Any = reasoner.vlm
    original = type(vlm).suffix_forward
    counter = [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return original(vlm, *args, **kwargs)

    vlm.suffix_forward = counted
    return counter


def test_a_cancelled_loop_stops_before_its_next_forward(reasoner: LatentReasoner) -> None:
    events: list[dict[str, object]] = []
    forwards = _count_forwards(reasoner)
    with pytest.raises(ReasoningCancelledError, match="stopped: test"):
        reasoner.reason(_request(steps=50), _cancel_at(2, events))
    assert [e["iteration"] for e in events] == [0, 1, 2]
    assert forwards[0] == 3  # iterations 0..2, and no further forward after the cancel
    assert reasoner._lock.acquire(blocking=False)  # the model is free again
    reasoner._lock.release()
    assert isinstance(reasoner.reason(_request(steps=0)), ReasoningResult)


def test_a_cancelled_caller_gives_up_waiting_for_the_model(reasoner: LatentReasoner) -> None:
    token = CancelToken()
    forwards = _count_forwards(reasoner)
    failure: list[BaseException] = []

    def wait() -> None:
        try:
            reasoner.reason(_request(steps=1), token)
        except BaseException as exc:
            failure.append(exc)

    with reasoner._lock:  # another inspection holds the model
        waiter = threading.Thread(target=wait)
        waiter.start()
        token.cancel("timed out while queued")
        waiter.join(10)
        assert not waiter.is_alive()
    assert isinstance(failure[0], ReasoningCancelledError) and forwards[0] == 0


def test_a_cancelled_request_leaves_its_batch_and_the_others_are_unchanged(reasoner: LatentReasoner) -> None:
    alone = reasoner.reason(_request(steps=4, seed=1))
    events: list[dict[str, object]] = []
    outcomes = reasoner.reason_batch(
        [_request(steps=30, seed=0), _request(steps=4, seed=1)], [_cancel_at(1, events), None]
    )
    assert isinstance(outcomes[0], ReasoningCancelledError)
    assert max(int(str(e["iteration"])) for e in events) == 1
    kept = outcomes[1]
    assert isinstance(kept, ReasoningResult) and kept.answer == alone.answer
    assert kept.trace.final_reward == pytest.approx(alone.trace.final_reward, abs=1e-4)


def test_a_token_cancelled_before_the_batch_never_reaches_the_model(reasoner: LatentReasoner) -> None:
    token = CancelToken()
    token.cancel("gone")
    outcomes = reasoner.reason_batch([_request(steps=3, seed=0), _request(steps=1, seed=1)], [token, None])
    assert isinstance(outcomes[0], ReasoningCancelledError) and isinstance(outcomes[1], ReasoningResult)


def _cancel_in_decode(vlm: Any, token: CancelToken, after: int) -> list[int]:
    """Cancel ``token`` once the decode has run ``after`` forwards; counts the decode's forwards."""
    run, generate, generate_batch = vlm._run, vlm.generate, vlm.generate_batch
    decoding, forwards = [False], [0]

    def counted_run(*args: Any, **kwargs: Any) -> Any:
        if decoding[0]:
            forwards[0] += 1
            if forwards[0] == after:
                token.cancel("timed out in the decode")
        return run(*args, **kwargs)

    def decode(method: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            decoding[0] = True
            try:
                return method(*args, **kwargs)
            finally:
                decoding[0] = False

        return wrapped

    vlm._run, vlm.generate, vlm.generate_batch = counted_run, decode(generate), decode(generate_batch)
    return forwards


@pytest.fixture
def talkative() -> LatentReasoner:
    """A reasoner whose decode never meets an end token: 200 rationale tokens unless stopped."""
    vlm = build_tiny_qwen2_vl(seed=5)
    vlm.eos_token_ids = set()
    return LatentReasoner(vlm, LatentConfig(reward_threshold=1.0, plateau_patience=0, rationale_tokens=200))


def test_a_cancelled_decode_stops_within_a_token(talkative: LatentReasoner) -> None:
    token = CancelToken()
    forwards = _cancel_in_decode(talkative.vlm, token, after=3)
    with pytest.raises(ReasoningCancelledError, match="in the decode"):
        talkative.reason(_request(steps=1), token)
    assert forwards[0] == 3  # the row and two tokens; none after the cancel (200 without it)
    assert isinstance(talkative.reason(_request(steps=0)), ReasoningResult)  # the model is free


def test_a_request_cancelled_in_the_group_decode_ends_alone(talkative: LatentReasoner) -> None:
    alone = talkative.reason(_request(steps=1, seed=1))
    token = CancelToken()
    forwards = _cancel_in_decode(talkative.vlm, token, after=3)
    outcomes = talkative.reason_batch([_request(steps=1, seed=0), _request(steps=1, seed=1)], [token, None])
    assert isinstance(outcomes[0], ReasoningCancelledError)
    kept = outcomes[1]
    assert isinstance(kept, ReasoningResult) and kept.text == alone.text and kept.answer == alone.answer
    # the group's forwards went on for the other request only: its row, then 199 tokens after the chosen
    # letter (the debiased letter is the first of the 200 tokens of its text)
    assert forwards[0] == 200
