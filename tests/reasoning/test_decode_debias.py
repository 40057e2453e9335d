"""Debiased answers: the option letters' place no longer decides (cyclic orders on the cached stem)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from riad_agent.models.tiny import build_tiny_qwen2_vl
from riad_agent.protocols import ReasoningInput
from riad_agent.reasoning import LatentReasoner
from riad_agent.reasoning.config import LatentConfig
from riad_agent.reasoning.decode import option_permutations, parse_letter, reordered
from riad_agent.schemas import MultipleChoiceQuestion

torch.set_num_threads(1)


def _image(seed: int) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((32, 32, 3)) * 255).astype("uint8"))


@pytest.fixture(scope="module")
def biased() -> Iterator[object]:
    """A tiny Qwen2-VL that strongly prefers the letter 'A' wherever it is asked."""
    vlm = build_tiny_qwen2_vl("qwen2_vl", seed=0)
    a_ids = vlm.option_token_ids(["A"])["A"]

    def push_a(module: torch.nn.Module, args: object, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[..., a_ids] += 4.0
        return out

    handle = vlm.model.lm_head.register_forward_hook(push_a)
    yield vlm
    handle.remove()


def _request(options: dict[str, str], seed: int) -> ReasoningInput:
    question = MultipleChoiceQuestion(text="Is there any defect in the object?", options=options)
    return ReasoningInput(
        image=_image(seed), question=question, templates=[_image(seed + 100)], latent_steps=1
    )


def test_parse_letter_follows_mmad_last_standalone_letter() -> None:
    # a rationale starting with "A" is not option A when it states another letter later
    assert parse_letter("A close look shows option B.", ["A", "B", "C"]) == "B"
    assert parse_letter("(C)", ["A", "B", "C"]) == "C"
    assert parse_letter("no letter here", ["A", "B"]) is None
    assert parse_letter("D is not an option, B is", ["A", "B", "C"]) == "B"


def test_option_orders_rotate_and_reverse() -> None:
    assert option_permutations(3, "cyclic") == [[0, 1, 2], [1, 2, 0], [2, 0, 1]]
    assert option_permutations(3, "dihedral")[3:] == [[2, 1, 0], [1, 0, 2], [0, 2, 1]]
    assert option_permutations(2, "dihedral") == [[0, 1], [1, 0]]  # no repeats
    question = MultipleChoiceQuestion(text="q", options={"A": "x", "B": "y", "C": "z"})
    assert reordered(question, [1, 2, 0]).options == {"A": "y", "B": "z", "C": "x"}


def test_reversed_four_options_give_the_same_option_with_dihedral_orders(biased: object) -> None:
    texts = ["Scratch.", "Crack.", "Hole.", "Stain."]
    reasoner = LatentReasoner(biased, LatentConfig(debias="dihedral", rationale_tokens=1))  # type: ignore[arg-type]
    raw = LatentReasoner(biased, LatentConfig(debias="none", rationale_tokens=1))  # type: ignore[arg-type]
    forward = _request(dict(zip("ABCD", texts, strict=True)), 4)
    backward = _request(dict(zip("ABCD", texts[::-1], strict=True)), 4)
    assert [raw.reason(r).answer for r in (forward, backward)] == ["A", "A"]
    answers = [reasoner.reason(r).answer for r in (forward, backward)]
    assert forward.question.options[str(answers[0])] == backward.question.options[str(answers[1])]


def test_a_first_letter_bias_no_longer_decides_the_option(biased: object) -> None:
    raw = LatentReasoner(biased, LatentConfig(debias="none", rationale_tokens=1))  # type: ignore[arg-type]
    debiased = LatentReasoner(biased, LatentConfig(debias="cyclic", rationale_tokens=1))  # type: ignore[arg-type]
    for seed in range(3):
        forward = _request({"A": "Yes.", "B": "No."}, seed)
        backward = _request({"A": "No.", "B": "Yes."}, seed)
        before = [raw.reason(r) for r in (forward, backward)]
        assert [r.answer for r in before] == ["A", "A"]  # the place decides: "Yes." once, "No." once
        after = [debiased.reason(r) for r in (forward, backward)]
        chosen = [r.question.options[str(a.answer)] for r, a in zip((forward, backward), after, strict=True)]
        assert chosen[0] == chosen[1]  # the same option whatever its letter
        assert after[0].text == after[0].answer  # the text states the chosen letter
        probabilities = after[0].trace.option_probabilities
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_the_stem_reproduces_the_full_prompt_and_batches_agree(biased: object) -> None:
    request = _request({"A": "Yes.", "B": "No.", "C": "Not sure."}, 7)
    plain = LatentReasoner(biased, LatentConfig(debias="none", rationale_tokens=1)).reason(request)  # type: ignore[arg-type]
    reasoner = LatentReasoner(biased, LatentConfig(debias="dihedral", rationale_tokens=3))  # type: ignore[arg-type]
    setup, _ = reasoner.setup(request)
    from riad_agent.reasoning.decode import debiased_probabilities, question_stem
    from riad_agent.reasoning.latent_loop import run_latent_loop

    stem = question_stem(biased, setup.prefix, request.question, "dihedral")  # type: ignore[arg-type]
    assert stem is not None and stem.prefix.prompt.length < setup.prefix.prompt.length
    best = run_latent_loop(biased, setup, reasoner.config).best  # type: ignore[arg-type]
    _, raw = debiased_probabilities(biased, setup, best, stem)  # type: ignore[arg-type]
    # order 0 on the stem = the whole prompt: the same letter probabilities as the plain decode
    assert raw.tolist() == pytest.approx(list(plain.trace.option_probabilities.values()), abs=1e-4)
    alone = reasoner.reason(request)
    batch = reasoner.reason_batch([request, _request({"A": "No.", "B": "Yes."}, 3)])
    first = batch[0]
    assert not isinstance(first, Exception)
    assert first.answer == alone.answer and first.text == alone.text
    for letter, p in alone.trace.option_probabilities.items():
        assert first.trace.option_probabilities[letter] == pytest.approx(p, abs=1e-4)


@pytest.mark.parametrize("debias", ["none", "dihedral"])
def test_an_answer_never_contradicts_a_confident_expert_score(biased: Any, debias: str) -> None:
    """The biased model says "A" (here "No.") for its place; a part the expert scored 0.97 is not
    answered "No." unless the rule is off, and the model's own letter stays in the trace."""

    def ask(score: float, **config: Any) -> Any:
        request = _request({"A": "No.", "B": "Yes."}, seed=3)
        request.settled_score = score
        return LatentReasoner(biased, LatentConfig(debias=debias, **config)).reason(request)

    for score, fits in ((0.97, "B"), (0.02, "A")):
        own = ask(score, follow_confident_verdict=False)
        found = ask(score)
        assert found.answer == fits and found.text.startswith(fits)
        if own.answer == fits:
            assert found.trace.answer_source == "model" and found.trace.model_answer is None
        else:
            assert found.trace.answer_source == "verdict" and found.trace.model_answer == own.answer
    if debias == "none":  # the bias stays: "No." was the model's own answer on the flagged part
        assert ask(0.97, follow_confident_verdict=False).answer == "A"
    unsure = ask(0.6)
    assert unsure.trace.answer_source == "model"
    assert unsure.answer == ask(0.6, follow_confident_verdict=False).answer
