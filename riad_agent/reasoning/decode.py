"""Final decode: the answer letter and a short rationale from the best latent state (patches kept).

Debiasing (``LatentConfig.debias``). A model may prefer a letter for its place (the builtin model
said "A" at P 0.7-0.9 whatever A was). The question is the prompt's last segment, so the prompt's
cache up to the question (the *stem*, a view of the prefix cache: nothing is recomputed) serves every
order of the options: the question is asked again in each order as a suffix row
``[question in order s] + [best latents and kept patches] + [answer start]`` and the letter
probabilities are mapped back to the options they showed and averaged over the orders. 'cyclic':
the n cyclic shifts (every option sits once at every place, so a preference for a place adds the
same to every option); 'dihedral' (the default): those and the n shifts of the reversed options, so
asking with the options reversed gives the same answer. The answer is the best option by the
average; the rationale is decoded after it (the text starts with the chosen letter). Cost: one
packed forward of n (cyclic) or 2n (dihedral) short rows per answer.

Outside evidence (``LoopSetup.preferred``, set from a registered product's labelled exemplars by
``LatentConfig.follow_exemplars``): when one option names the type the exemplars clearly point to,
that option is the answer and the rationale is decoded after it; the model's own choice (the
debiased best) is kept as ``Decoded.model_answer``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from riad_agent.models.base import (
    BatchedVisionLanguageModel,
    Injection,
    PrefixState,
    PreparedPrompt,
    StopCheck,
    VisionLanguageModel,
)
from riad_agent.models.hf_cache import fork_cache
from riad_agent.reasoning.latent_loop import LoopSetup, State, build_row, row_injection
from riad_agent.reasoning.prompt import question_text
from riad_agent.reasoning.reward import option_logits
from riad_agent.schemas import AnswerSource, MultipleChoiceQuestion

_LETTER = re.compile(r"\b([A-Z])\b")


@dataclass
class Decoded:
    answer: str | None
    text: str
    letter_from_logits: str
    letter_from_text: str | None
    probabilities: dict[str, float]
    raw_probabilities: dict[str, float] | None = None  # before debiasing, when it ran
    # 'exemplars': the setup's preferred option (outside evidence); 'verdict': the model's letter was
    # one the setup excludes (it contradicts a confident expert score) and the best other was taken
    source: AnswerSource = "model"
    model_answer: str | None = None  # the model's own letter when the source is not the model


@dataclass
class QuestionStem:
    """The cached prompt before the question, and the question's text in each order of its options.

    ``orders[s]`` are the input embeddings of the question asked in ``permutations[s]``: the letter
    at place i shows the original option ``permutations[s][i]``.
    """

    prefix: PrefixState
    orders: list[torch.Tensor]
    permutations: list[list[int]]


def parse_letter(text: str, letters: list[str]) -> str | None:
    """The answer letter of ``text`` by MMAD's rule: its *last* standalone option letter, else None."""
    found = [letter for letter in _LETTER.findall(text) if letter in letters]
    return found[-1] if found else None


def option_permutations(n: int, kind: str = "dihedral") -> list[list[int]]:
    """Orders of n options (place i shows option ``order[i]``): the cyclic shifts, and for 'dihedral'
    also the shifts of the reversed options (without repeats); the first is the original order."""
    orders = [[(i + s) % n for i in range(n)] for s in range(n)]
    if kind == "dihedral":
        orders += [[n - 1 - o for o in order] for order in orders]
    unique: list[list[int]] = []
    for order in orders:
        if order not in unique:
            unique.append(order)
    return unique


def reordered(question: MultipleChoiceQuestion, order: list[int]) -> MultipleChoiceQuestion:
    """The question with its option texts in ``order`` (the letters stay A, B, ...)."""
    letters = list(question.options)
    texts = list(question.options.values())
    return question.model_copy(update={"options": {letters[i]: texts[o] for i, o in enumerate(order)}})


def stem_prefix(prefix: PrefixState, question_tokens: int) -> PrefixState | None:
    """The prefix without its last ``question_tokens`` tokens, as a view of its cache (None: not possible).

    Only the cache's tensors are sliced (no copy); the prefix itself is left as it was.
    """
    prompt = prefix.prompt
    keep = prompt.length - question_tokens
    layers = getattr(prefix.cache, "layers", None)
    visual_end = max((span.end for span in prompt.spans), default=0)
    if layers is None or question_tokens < 1 or keep < visual_end:
        return None
    cache = fork_cache(prefix.cache)
    for layer in cache.layers:
        if getattr(layer, "keys", None) is None or int(layer.keys.shape[-2]) != prompt.length:
            return None
        layer.keys, layer.values = layer.keys[..., :keep, :], layer.values[..., :keep, :]
    positions = prompt.position_ids[..., :keep]
    stem = PreparedPrompt(
        input_ids=prompt.input_ids[:, :keep],
        inputs_embeds=prompt.inputs_embeds[:, :keep],
        position_ids=positions,
        next_position=int(positions.max()) + 1,
        spans=prompt.spans,
        extras=prompt.extras,
    )
    return PrefixState(prompt=stem, cache=cache, last_logits=prefix.last_logits)


def question_stem(
    vlm: VisionLanguageModel, prefix: PrefixState, question: MultipleChoiceQuestion, kind: str = "dihedral"
) -> QuestionStem | None:
    """What debiased decoding (``kind`` 'cyclic' or 'dihedral') needs for one request (None when the
    prompt cannot be split)."""
    permutations = option_permutations(len(question.options), kind)
    orders = [vlm.embed_text(question_text(reordered(question, order))) for order in permutations]
    stem = stem_prefix(prefix, int(orders[0].shape[0]))
    return None if stem is None else QuestionStem(prefix=stem, orders=orders, permutations=permutations)


def order_probabilities(
    vlm: VisionLanguageModel, setup: LoopSetup, state: State, stem: QuestionStem
) -> torch.Tensor:
    """(orders, options): each order's letter probabilities, mapped back to the original options.

    Row s is the answer distribution when the question is asked in order s (one packed forward on
    the stem for all orders); column o is the probability of the letter that showed option o.
    """
    base = build_row(setup, state.latents, state.patches)
    rows = [torch.cat([order.to(base.dtype), base]) for order in stem.orders]
    positions = [[int(row.shape[0]) - 1] for row in rows]
    injected = [_shifted(_injection(setup, state), int(order.shape[0])) for order in stem.orders]
    with torch.no_grad():
        out = vlm.suffix_forward(stem.prefix, rows, positions, injected=injected)
    probs = torch.stack([option_logits(logits[0], setup.option_ids).softmax(-1) for logits in out.logits])
    places = [sorted(range(len(order)), key=order.__getitem__) for order in stem.permutations]
    return torch.gather(probs, 1, torch.tensor(places, device=probs.device))


def debiased_probabilities(
    vlm: VisionLanguageModel, setup: LoopSetup, state: State, stem: QuestionStem
) -> tuple[torch.Tensor, torch.Tensor]:
    """(debiased, raw) probabilities over the options in their original order.

    Debiased: each option's probability averaged over the orders; raw: the original order's.
    """
    mapped = order_probabilities(vlm, setup, state, stem)
    return mapped.mean(0), mapped[0]


def answer_probabilities(
    vlm: VisionLanguageModel, setup: LoopSetup, state: State, row: torch.Tensor
) -> torch.Tensor:
    """The option probabilities at the answer position of the best row (one short forward)."""
    with torch.no_grad():
        out = vlm.suffix_forward(
            setup.prefix, [row], [[int(row.shape[0]) - 1]], injected=[_injection(setup, state)]
        )
    return option_logits(out.logits[0], setup.option_ids)[0].softmax(-1)


def decode_answer(
    vlm: VisionLanguageModel,
    setup: LoopSetup,
    state: State,
    max_new_tokens: int,
    should_stop: StopCheck | None = None,
    stem: QuestionStem | None = None,
) -> Decoded:
    """Greedy-decode after prefix + best latents + kept patches + answer start.

    Without ``stem`` the answer is the letter the generated text states when it states one (MMAD's
    rule), else the best letter by option logits at the answer position; both are recorded. With it
    the answer is the debiased best option and the text is that letter and the rationale decoded
    after it. ``should_stop`` (asked per new token) cuts the rationale short: the caller that set
    it discards the result.
    """
    return decode_answers(vlm, [setup], [state], max_new_tokens, [should_stop], [stem])[0]


def decode_answers(
    vlm: VisionLanguageModel,
    setups: list[LoopSetup],
    states: list[State],
    max_new_tokens: int,
    should_stop: list[StopCheck | None] | None = None,
    stems: list[QuestionStem | None] | None = None,
) -> list[Decoded]:
    """:func:`decode_answer` for several requests, decoding them in lockstep when the model can."""
    stops = should_stop or [None for _ in setups]
    stems = stems or [None for _ in setups]
    letters = [list(setup.option_ids) for setup in setups]
    chosen: list[tuple[str, torch.Tensor, torch.Tensor] | None] = []
    rows, budgets = [], []
    for setup, state, stem, names in zip(setups, states, stems, letters, strict=True):
        row = build_row(setup, state.latents, state.patches)
        if stem is None and setup.preferred is None and not setup.excluded:
            chosen.append(None)
            rows.append(row)
            budgets.append(max(1, max_new_tokens))
            continue
        if stem is not None:
            debiased, raw = debiased_probabilities(vlm, setup, state, stem)
        else:
            debiased = raw = answer_probabilities(vlm, setup, state, row)
        letter = setup.preferred or allowed_best(names, debiased, setup.excluded)
        chosen.append((letter, debiased, raw))
        rows.append(torch.cat([row, vlm.embed_text(letter).to(row.dtype)]))
        budgets.append(max(0, max_new_tokens - 1))
    outputs = _generate(vlm, setups, rows, budgets, states, stops)
    results = []
    for setup, names, pick, (logits, ids) in zip(setups, letters, chosen, outputs, strict=True):
        if pick is None:
            results.append(_decoded(vlm, setup, logits, ids))
            continue
        letter, debiased, raw = pick
        own = names[int(torch.argmax(debiased))]
        source: AnswerSource = (
            "exemplars" if setup.preferred is not None else "verdict" if letter != own else "model"
        )
        results.append(
            Decoded(
                answer=letter,
                text=(letter + vlm.decode_tokens(ids)).strip() if ids else letter,
                letter_from_logits=names[int(torch.argmax(raw))],
                letter_from_text=letter,
                probabilities=_named(names, debiased),
                raw_probabilities=_named(names, raw),
                source=source,
                model_answer=None if source == "model" else own,
            )
        )
    return results


def allowed_best(names: list[str], probabilities: torch.Tensor, excluded: frozenset[str]) -> str:
    """The most probable option letter that is not ``excluded`` (all excluded: the most probable)."""
    order = [int(i) for i in torch.argsort(probabilities, descending=True)]
    allowed = [names[i] for i in order if names[i] not in excluded]
    return allowed[0] if allowed else names[order[0]]


def _generate(
    vlm: VisionLanguageModel,
    setups: list[LoopSetup],
    rows: list[torch.Tensor],
    budgets: list[int],
    states: list[State],
    stops: list[StopCheck | None],
) -> list[tuple[torch.Tensor | None, list[int]]]:
    """Greedy tokens after each row (no forward for a row with no budget), in lockstep when possible."""
    outputs: list[tuple[torch.Tensor | None, list[int]]] = [(None, []) for _ in rows]
    wanted = [i for i, budget in enumerate(budgets) if budget > 0]
    same_budget = len({budgets[i] for i in wanted}) == 1
    if len(wanted) > 1 and same_budget and isinstance(vlm, BatchedVisionLanguageModel):
        batch = vlm.generate_batch(
            [setups[i].prefix for i in wanted],
            [rows[i] for i in wanted],
            budgets[wanted[0]],
            [_injection(setups[i], states[i]) for i in wanted],
            should_stop=[stops[i] for i in wanted],
        )
        for i, (logits, ids) in zip(wanted, batch, strict=True):
            outputs[i] = (logits, ids)
        return outputs
    for i in wanted:
        logits, ids = vlm.generate(
            setups[i].prefix,
            rows[i],
            budgets[i],
            injected=_injection(setups[i], states[i]),
            should_stop=stops[i],
        )
        outputs[i] = (logits, ids)
    return outputs


def _injection(setup: LoopSetup, state: State) -> list[Injection]:
    """Where the best row holds its patches (the loop's own layout)."""
    return row_injection(setup, state.latents, list(state.patches))


def _shifted(blocks: list[Injection], by: int) -> list[Injection]:
    """The injection blocks of a row that gets ``by`` tokens in front of it."""
    return [(at + by, list(indices)) for at, indices in blocks]


def _named(letters: list[str], probabilities: torch.Tensor) -> dict[str, float]:
    return {letter: float(p) for letter, p in zip(letters, probabilities, strict=True)}


def _decoded(
    vlm: VisionLanguageModel, setup: LoopSetup, first_logits: torch.Tensor | None, ids: list[int]
) -> Decoded:
    assert first_logits is not None
    letters = list(setup.option_ids)
    probs = option_logits(first_logits[None], setup.option_ids)[0].softmax(-1)
    by_logits = letters[int(torch.argmax(probs))]
    text = vlm.decode_tokens(ids).strip()
    by_text = parse_letter(text, letters)
    return Decoded(
        answer=by_text or by_logits,
        text=text,
        letter_from_logits=by_logits,
        letter_from_text=by_text,
        probabilities=_named(letters, probs),
    )
