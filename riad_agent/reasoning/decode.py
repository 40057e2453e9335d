"""Final decode: the answer letter and a short rationale from the best latent state (patches kept)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from riad_agent.models.base import BatchedVisionLanguageModel, StopCheck, VisionLanguageModel
from riad_agent.reasoning.latent_loop import LoopSetup, State, build_row
from riad_agent.reasoning.reward import option_probabilities

_STANDALONE = re.compile(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])")


@dataclass
class Decoded:
    answer: str | None
    text: str
    letter_from_logits: str
    letter_from_text: str | None
    probabilities: dict[str, float]


def parse_letter(text: str, letters: list[str]) -> str | None:
    """The first standalone option letter in ``text`` ('B', 'B.', '(B)', 'Answer: B'), else None."""
    for match in _STANDALONE.finditer(text):
        if match.group(1) in letters:
            return match.group(1)
    return None


def decode_answer(
    vlm: VisionLanguageModel,
    setup: LoopSetup,
    state: State,
    max_new_tokens: int,
    should_stop: StopCheck | None = None,
) -> Decoded:
    """Greedy-decode after prefix + best latents + kept patches + answer start.

    The answer is the letter the generated text states when it states one, else the best letter by
    option logits at the answer position; both are recorded. ``should_stop`` (asked per new token)
    cuts the rationale short: the caller that set it discards the result.
    """
    row = build_row(setup, state.latents, state.patches)
    first_logits, ids = vlm.generate(
        setup.prefix, row, max(1, max_new_tokens), injected=_injection(state), should_stop=should_stop
    )
    return _decoded(vlm, setup, first_logits, ids)


def decode_answers(
    vlm: VisionLanguageModel,
    setups: list[LoopSetup],
    states: list[State],
    max_new_tokens: int,
    should_stop: list[StopCheck | None] | None = None,
) -> list[Decoded]:
    """:func:`decode_answer` for several requests, decoding them in lockstep when the model can."""
    stops = should_stop or [None for _ in setups]
    if len(setups) < 2 or not isinstance(vlm, BatchedVisionLanguageModel):
        return [
            decode_answer(vlm, s, state, max_new_tokens, stop)
            for s, state, stop in zip(setups, states, stops, strict=True)
        ]
    rows = [build_row(s, state.latents, state.patches) for s, state in zip(setups, states, strict=True)]
    outputs = vlm.generate_batch(
        [s.prefix for s in setups],
        rows,
        max(1, max_new_tokens),
        [_injection(state) for state in states],
        should_stop=stops,
    )
    return [_decoded(vlm, s, logits, ids) for s, (logits, ids) in zip(setups, outputs, strict=True)]


def _injection(state: State) -> tuple[int, list[int]]:
    return int(state.latents.shape[0]), list(state.patches)


def _decoded(
    vlm: VisionLanguageModel, setup: LoopSetup, first_logits: torch.Tensor, ids: list[int]
) -> Decoded:
    letters = list(setup.option_ids)
    probs = option_probabilities(first_logits[None], setup.option_ids)[0]
    by_logits = letters[int(torch.argmax(probs))]
    text = vlm.decode_tokens(ids).strip()
    by_text = parse_letter(text, letters)
    return Decoded(
        answer=by_text or by_logits,
        text=text,
        letter_from_logits=by_logits,
        letter_from_text=by_text,
        probabilities={letter: float(p) for letter, p in zip(letters, probs, strict=True)},
    )
