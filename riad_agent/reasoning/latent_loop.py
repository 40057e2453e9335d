"""The latent reasoning loop of Reason-IAD, top to bottom.

Setting. The prompt (instruction, knowledge, templates, query image, question) has been run once as
a prefix; its KV cache is shared by everything below and never mutated. A *row* is what follows the
prefix: the L latent embeddings with the m injected query-patch features, then the answer-start
tokens. Layout (``patch_layout``): 'interleaved' (default, as DMLR describes it) deals the patches
out after the latents, ``z1 P1 z2 P2 .. zL PL``, so the later latents, their attention and their
rewarded positions see the patches; 'after' puts them all after ``zL`` (what the builtin model was
trained with). Rows are evaluated in one packed batch on the shared cache, so an iteration costs
only the suffix tokens.

Reward of a row (``reward.py``, fp32): 1 - mean normalised top-k entropy of the next-token
distributions at the L latent positions and at the answer position (or, as variants, the top
option-letter probability at the answer position, or the entropy mixed with the agreement of the
latents' attention with the expert's map). The answer position is included because it always sees
every patch; with the 'after' layout it is the only rewarded position that does.

Before the first iteration, when the expert gave a prior (``initial_patches='prior'``), the row
starts with the m cells the prior ranks highest. Per iteration t (T at most):
  1. sigma_t = sigma * rms(E) * decay^t;  eps_k ~ N(0, sigma_t^2), k = 1..K  (seeded generator;
     ``mirrored``: K/2 draws, each used as +eps and -eps)
  2. one batch: the current row z (with patch set S), the K perturbed rows z + eps_k, and, when a
     candidate patch set S' is pending, the row (z, S'); the current row also returns the latents'
     attention onto the query image's visual tokens (q/k of the chosen layers)
  3. accept S' only if its reward beats the current row's by more than ``accept_margin``; keep the
     best (z, S) ever evaluated (a rejected candidate row does not count)
  4. update z += lr * normalise(mean_k((R_k - mean R) * eps_k) / sigma_t^2)   [REINFORCE]
     or z += lr * normalise(dR/dz)                                               [exact gradient]
  5. new candidate S' = S united with the m best patches not tried yet, scored by the expert prior
     first and the attention by rank (``injection.py``), at most ``max_patches``; so the candidate
     changes every round, if rounds remain
  6. stop early once the best reward reaches the threshold, or (``plateau_patience`` > 0) once it
     has gained less than ``plateau_tolerance`` over the last ``plateau_patience`` iterations with no
     candidate patch set pending
Finally the last z is evaluated too, and the best state goes to the decode (patches included).

Driving. The loop is written as a generator (:func:`latent_loop_steps`): wherever it needs the model
it yields an :class:`Evaluation` (its rows) and receives the :class:`Scores`. :func:`run_latent_loop`
answers each one with a packed forward on the request's own prefix. :func:`run_latent_loops` runs
the loops of several requests in lockstep: per round it gathers the pending evaluation of every
live loop and answers all of them with one group forward (``suffix_forward_batch``: the requests'
prefixes stacked on the batch axis). Each loop keeps its own seeded generator and its own state,
so it takes the same path as alone (up to float rounding); a loop that fails or is cancelled (its
progress callback raises, or its :class:`~riad_agent.reasoning.cancel.CancelToken` is set before a
forward) leaves the group without disturbing the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Literal, TypeVar, cast

import torch

from riad_agent.models.base import BatchedVisionLanguageModel, Injection, PrefixState, VisionLanguageModel
from riad_agent.reasoning.cancel import CancelToken, check, token_of
from riad_agent.reasoning.config import LatentConfig
from riad_agent.reasoning.injection import patch_refs, score_patches, union_candidate
from riad_agent.reasoning.reward import entropy_reward, map_agreement, option_confidence_reward, topk_entropy
from riad_agent.schemas import IterationTrace, LoopStop, PatchRef

PatchLayout = Literal["interleaved", "after"]


@dataclass
class LoopSetup:
    """Per-inspection inputs of the loop."""

    prefix: PrefixState
    latents: torch.Tensor  # L x hidden, float32
    answer_start: torch.Tensor  # A x hidden
    option_ids: dict[str, list[int]]
    prior: torch.Tensor | None  # flattened query-grid prior in [0, 1], or None
    steps: int
    inject: bool
    seed: int
    embedding_rms: float
    layout: PatchLayout = "interleaved"  # set by the loop from its config; the decode builds the same rows
    preferred: str | None = None  # the option letter outside evidence names (the exemplars' type), if any
    excluded: frozenset[str] = frozenset()  # letters whose options contradict a confident expert score


@dataclass
class State:
    """Latents, injected patch indices and their reward."""

    latents: torch.Tensor
    patches: list[int]
    reward: float
    entropy: float
    scores: torch.Tensor | None = None  # the patch scores that chose ``patches``


@dataclass
class LoopResult:
    best: State
    initial_reward: float
    iterations: list[IterationTrace] = field(default_factory=list)
    stopped: LoopStop = "steps"


def patch_groups(n_latent: int, patches: list[int], layout: PatchLayout) -> list[list[int]]:
    """The patches that follow each latent: dealt out in order over the latents (the first ones get
    one more when they do not divide evenly), or all after the last latent."""
    if layout == "after" or not patches:
        return [[] for _ in range(n_latent - 1)] + [list(patches)]
    size, extra = divmod(len(patches), n_latent)
    groups, start = [], 0
    for i in range(n_latent):
        end = start + size + (1 if i < extra else 0)
        groups.append(list(patches[start:end]))
        start = end
    return groups


def row_layout(n_latent: int, patches: list[int], layout: PatchLayout) -> tuple[list[int], list[Injection]]:
    """Positions of the latents in a row and its injection blocks ``(offset, patch indices)``."""
    latent_positions: list[int] = []
    blocks: list[Injection] = []
    at = 0
    for group in patch_groups(n_latent, patches, layout):
        latent_positions.append(at)
        at += 1
        if group:
            blocks.append((at, group))
            at += len(group)
    return latent_positions, blocks


def build_row(setup: LoopSetup, latents: torch.Tensor, patches: list[int]) -> torch.Tensor:
    """Latents with the real merged features of the chosen query patches, then the answer start.

    ``setup.layout`` 'interleaved': ``z1 P1 z2 P2 ... zL PL [answer start]`` with the patches dealt
    out over the latents; 'after': ``z1 .. zL P [answer start]``.
    """
    span = setup.prefix.prompt.query_span
    parts = []
    for z, group in zip(latents, patch_groups(int(latents.shape[0]), patches, setup.layout), strict=True):
        parts.append(z[None])
        if group:
            parts.append(span.features[group].to(latents.dtype))
    parts.append(setup.answer_start.to(latents.dtype))
    return torch.cat(parts, dim=0)


def row_injection(setup: LoopSetup, state_latents: torch.Tensor, patches: list[int]) -> list[Injection]:
    """The injection blocks of :func:`build_row`'s row (for models that treat spliced patches specially)."""
    return row_layout(int(state_latents.shape[0]), patches, setup.layout)[1]


@dataclass
class Evaluation:
    """Rows ``(latents, patches)`` a loop wants scored in one packed forward.

    ``attend``: the first row also returns its latents' attention onto the query image.
    ``gradient``: every row shares the first row's latents z; also return d reward(row 0) / dz.
    """

    rows: list[tuple[torch.Tensor, list[int]]]
    attend: bool
    gradient: bool = False


@dataclass
class Scores:
    """Rewards and mean latent entropies of an evaluation's rows, and what else it asked for."""

    rewards: torch.Tensor
    entropies: torch.Tensor
    attention: torch.Tensor | None
    gradient: torch.Tensor | None = None


def _row_inputs(
    setup: LoopSetup, rows: list[tuple[torch.Tensor, list[int]]], attend: bool | Literal["all"]
) -> tuple[list[torch.Tensor], list[list[int]], list[list[int]] | None, list[list[Injection]]]:
    """Built rows, rewarded positions, attending positions and injections of packed rows.

    ``attend``: 'first' row only, 'all' rows (the expert-map reward), or none (False)."""
    n_latent = int(setup.latents.shape[0])
    built = [build_row(setup, z, s) for z, s in rows]
    layouts = [row_layout(n_latent, s, setup.layout) for _, s in rows]
    positions = [[*latents, int(r.shape[0]) - 1] for r, (latents, _) in zip(built, layouts, strict=True)]
    attend_from: list[list[int]] | None = None
    if attend == "all":
        attend_from = [latents for latents, _ in layouts]
    elif attend:
        attend_from = [layouts[0][0]] + [[] for _ in built[1:]]
    injected = [blocks for _, blocks in layouts]
    return built, positions, attend_from, injected


def _uses_map(setup: LoopSetup, config: LatentConfig) -> bool:
    return config.reward == "entropy_expert_map" and setup.prior is not None


def _rewards(
    setup: LoopSetup, config: LatentConfig, logits: list[torch.Tensor], attention: list[torch.Tensor] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    stacked = torch.stack(logits).float()  # rows x (L latent positions + answer position) x vocab, fp32
    entropy = topk_entropy(stacked, config.top_k).mean(-1)
    if config.reward == "entropy" or (config.reward == "entropy_expert_map" and not _uses_map(setup, config)):
        return entropy_reward(stacked, config.top_k), entropy
    if config.reward == "entropy_expert_map":
        assert setup.prior is not None and attention is not None
        agreement = map_agreement(torch.stack(attention).detach(), setup.prior).to(stacked.device)
        weight = config.expert_map_weight
        return (1.0 - weight) * entropy_reward(stacked, config.top_k) + weight * agreement, entropy
    n_latent = int(setup.latents.shape[0])
    return option_confidence_reward(stacked[:, n_latent], setup.option_ids), entropy


def _leaf_rows(evaluation: Evaluation) -> tuple[list[tuple[torch.Tensor, list[int]]], torch.Tensor | None]:
    """The rows to run; for a gradient evaluation, z is replaced by a fresh leaf in every row."""
    if not evaluation.gradient:
        return evaluation.rows, None
    shared = evaluation.rows[0][0]
    leaf = shared.detach().clone().requires_grad_(True)
    return [(leaf if z is shared else z, s) for z, s in evaluation.rows], leaf


def score_batch(
    vlm: VisionLanguageModel, config: LatentConfig, items: list[tuple[LoopSetup, Evaluation]]
) -> list[Scores]:
    """Answer the evaluations of one or more loops in one forward (a group forward when several).

    Runs under the caller's grad mode; evaluations asking for a gradient turn autograd on and get
    d reward(row 0) / dz (requests never see each other, so one backward serves them all).
    """
    prepared = [_leaf_rows(evaluation) for _, evaluation in items]
    leaves = [leaf for _, leaf in prepared if leaf is not None]
    with torch.enable_grad() if leaves else contextlib.nullcontext():
        inputs = [
            _row_inputs(setup, rows, "all" if _uses_map(setup, config) else evaluation.attend)
            for (setup, evaluation), (rows, _) in zip(items, prepared, strict=True)
        ]
        if len(items) == 1 or not isinstance(vlm, BatchedVisionLanguageModel):
            outputs = [
                vlm.suffix_forward(
                    setup.prefix,
                    built,
                    positions,
                    attend_from=attend_from,
                    attention_layers=config.attention_layers,
                    injected=injected,
                )
                for (setup, _), (built, positions, attend_from, injected) in zip(items, inputs, strict=True)
            ]
        else:
            outputs = vlm.suffix_forward_batch(
                [setup.prefix for setup, _ in items],
                [built for built, _, _, _ in inputs],
                [positions for _, positions, _, _ in inputs],
                [attend_from for _, _, attend_from, _ in inputs],
                attention_layers=config.attention_layers,
                injected=[injected for _, _, _, injected in inputs],
            )
        scores = []
        for (setup, evaluation), out in zip(items, outputs, strict=True):
            reward, entropy = _rewards(setup, config, out.logits, out.attention)
            attention = out.attention[0] if out.attention is not None and evaluation.attend else None
            scores.append(Scores(reward, entropy, attention))
        if leaves:
            wanted = [score for score, (_, leaf) in zip(scores, prepared, strict=True) if leaf is not None]
            grads = torch.autograd.grad(torch.stack([score.rewards[0] for score in wanted]).sum(), leaves)
            for score, grad in zip(wanted, grads, strict=True):
                score.gradient = grad.detach()
    for score in scores:
        score.rewards, score.entropies = score.rewards.detach(), score.entropies.detach()
    return scores


def sigma_at(config: LatentConfig, setup: LoopSetup, step: int) -> float:
    return config.sigma * setup.embedding_rms * config.sigma_decay**step


def _normalised(direction: torch.Tensor, config: LatentConfig, setup: LoopSetup) -> torch.Tensor:
    if not config.normalise_update:
        return config.lr * direction
    rms = direction.pow(2).mean().sqrt()
    if float(rms) == 0.0:
        return torch.zeros_like(direction)
    return config.lr * setup.embedding_rms * direction / rms


StepOutcome = tuple[torch.Tensor, list[State], torch.Tensor | None]
"""The updated latents, every state evaluated, the current row's attention onto the query image."""


def reinforce_steps(
    setup: LoopSetup,
    config: LatentConfig,
    current: State,
    candidate: list[int] | None,
    step: int,
    generator: torch.Generator,
) -> Generator[Evaluation, Scores, StepOutcome]:
    """One REINFORCE iteration (as a generator: yields its one evaluation)."""
    sigma = sigma_at(config, setup, step)
    z = current.latents
    draws = config.perturbations // 2 if config.mirrored else config.perturbations
    eps = torch.randn((draws, *z.shape), generator=generator).to(z) * sigma
    if config.mirrored:
        eps = torch.cat([eps, -eps])
    rows = [(z, current.patches)] + [(z + e, current.patches) for e in eps]
    if candidate is not None:
        rows.append((z, candidate))
    scores = yield Evaluation(rows, attend=setup.inject)
    evaluated = [
        State(latents, patches, float(r), float(h))
        for (latents, patches), r, h in zip(rows, scores.rewards, scores.entropies, strict=True)
    ]
    perturbed = scores.rewards[1 : 1 + config.perturbations]
    advantage = (perturbed - perturbed.mean()).to(z)
    estimate = (advantage.view(-1, 1, 1) * eps).mean(0) / sigma**2
    return z + _normalised(estimate, config, setup), evaluated, scores.attention


def gradient_steps(
    setup: LoopSetup, config: LatentConfig, current: State, candidate: list[int] | None
) -> Generator[Evaluation, Scores, StepOutcome]:
    """One exact-gradient ascent iteration on the (differentiable) reward of the current row."""
    z = current.latents
    rows = [(z, current.patches)] + ([(z, candidate)] if candidate is not None else [])
    scores = yield Evaluation(rows, attend=setup.inject, gradient=True)
    assert scores.gradient is not None
    evaluated = [
        State(z, patches, float(r), float(h))
        for (_, patches), r, h in zip(rows, scores.rewards, scores.entropies, strict=True)
    ]
    return z + _normalised(scores.gradient, config, setup), evaluated, scores.attention


T = TypeVar("T")


def drive(
    vlm: VisionLanguageModel,
    setup: LoopSetup,
    config: LatentConfig,
    steps: Generator[Evaluation, Scores, T],
    token: CancelToken | None = None,
) -> T:
    """Run a loop generator alone: answer each evaluation with a forward on its own prefix.

    ``token`` is checked before every forward; once cancelled, :class:`ReasoningCancelledError` ends the loop.
    """
    try:
        evaluation = next(steps)
        while True:
            check(token)
            with torch.no_grad():
                (scores,) = score_batch(vlm, config, [(setup, evaluation)])
            evaluation = steps.send(scores)
    except StopIteration as stop:
        return cast(T, stop.value)


Progress = Callable[[dict[str, object]], None]


def run_latent_loop(
    vlm: VisionLanguageModel, setup: LoopSetup, config: LatentConfig, progress: Progress | None = None
) -> LoopResult:
    """Optimise the latents (and the injected patch set) for ``setup.steps`` iterations at most.

    A :class:`CancelToken` given as ``progress`` stops the loop before its next forward.
    """
    return drive(vlm, setup, config, latent_loop_steps(setup, config, progress), token_of(progress))


def run_latent_loops(
    vlm: VisionLanguageModel,
    setups: list[LoopSetup],
    config: LatentConfig,
    progress: list[Progress | None] | None = None,
) -> list[LoopResult | Exception]:
    """Several requests' loops in lockstep, one group forward per round for all loops still running.

    Each entry is the loop's result, or the exception that ended it (e.g. its progress callback
    raised because the caller gave up); the other loops carry on. Should a group forward itself
    fail, the round is retried one loop at a time, so only the loop at fault ends.
    """
    callbacks = progress or [None] * len(setups)
    loops = [latent_loop_steps(s, config, p) for s, p in zip(setups, callbacks, strict=True)]
    outcomes: list[LoopResult | Exception | None] = [None] * len(loops)
    pending: dict[int, Evaluation] = {}

    def advance(index: int, scores: Scores | None) -> None:
        try:
            pending[index] = next(loops[index]) if scores is None else loops[index].send(scores)
        except StopIteration as stop:
            outcomes[index] = stop.value
        except Exception as exc:  # noqa: BLE001 - it ends this loop only
            outcomes[index] = exc

    for index in range(len(loops)):
        advance(index, None)
    while pending:
        for index, token in [(i, token_of(callbacks[i])) for i in sorted(pending)]:
            if token is not None and token.cancelled:  # its caller gave up: it leaves before the next forward
                del pending[index]
                outcomes[index] = token.error()
                loops[index].close()
        if not pending:
            break
        order = sorted(pending)
        items = [(setups[i], pending.pop(i)) for i in order]
        try:
            with torch.no_grad():
                answers: list[Scores | Exception] = list(score_batch(vlm, config, items))
        except Exception:  # noqa: BLE001 - find the culprit: score each loop alone
            answers = [_score_alone(vlm, config, item) for item in items]
        for index, answer in zip(order, answers, strict=True):
            if isinstance(answer, Exception):
                outcomes[index] = answer
                loops[index].close()
            else:
                advance(index, answer)
    return [cast(LoopResult | Exception, outcome) for outcome in outcomes]


def _score_alone(
    vlm: VisionLanguageModel, config: LatentConfig, item: tuple[LoopSetup, Evaluation]
) -> Scores | Exception:
    try:
        with torch.no_grad():
            return score_batch(vlm, config, [item])[0]
    except Exception as exc:  # noqa: BLE001 - reported to this loop's request only
        return exc


def latent_loop_steps(
    setup: LoopSetup, config: LatentConfig, progress: Progress | None = None
) -> Generator[Evaluation, Scores, LoopResult]:
    """The loop itself, yielding each evaluation it needs (see the module docstring)."""
    setup.layout = config.patch_layout
    generator = torch.Generator().manual_seed(setup.seed)
    span = setup.prefix.prompt.query_span
    current = State(setup.latents.float(), [], float("nan"), float("nan"))
    best: State | None = None
    initial = float("nan")
    rounds_left = config.injection_rounds if setup.inject else 0
    tried_ids: set[int] = set()
    candidate: list[int] | None = None
    candidate_scores: torch.Tensor | None = None
    if (
        setup.inject
        and setup.prior is not None
        and config.prior_weight > 0
        and config.initial_patches == "prior"
    ):
        # 0. the row starts with the expert's strongest patches (no attention needed to find them)
        current.scores = score_patches(None, setup.prior, config.prior_weight, config.patch_selection)
        current.patches = union_candidate([], current.scores, config.patches, (), config.max_patches)
        tried_ids.update(current.patches)
    traces: list[IterationTrace] = []
    best_so_far: list[float] = []  # the best reward after each iteration
    stopped: LoopStop = "steps"

    for step in range(setup.steps):
        started = time.perf_counter()
        # 1-2. evaluate the current row, its perturbations and the pending candidate; update z
        if config.optimiser == "reinforce":
            new_latents, evaluated, attention = yield from reinforce_steps(
                setup, config, current, candidate, step, generator
            )
        else:
            new_latents, evaluated, attention = yield from gradient_steps(setup, config, current, candidate)
        for state in evaluated:
            state.scores = current.scores
        if candidate is not None:
            evaluated[-1].scores = candidate_scores
        here = evaluated[0]
        if step == 0:
            initial = here.reward
        # 3. accept the candidate set only past the margin; keep the best state seen (a rejected
        #    candidate row does not count: its edge is within the margin, i.e. noise)
        accepted = candidate is not None and evaluated[-1].reward > here.reward + config.accept_margin
        if candidate is not None and not accepted:
            evaluated = evaluated[:-1]
        elif accepted:
            here = evaluated[-1]
        for state in evaluated:
            if best is None or state.reward > best.reward:
                best = dataclasses.replace(state, latents=state.latents.detach().clone())
        tried = patch_refs(span, candidate, candidate_scores) if candidate is not None else []
        # 4. the update (computed with the current patch set) moves the latents
        current = State(new_latents.detach(), list(here.patches), here.reward, here.entropy, here.scores)
        # 5. next candidate: the kept set united with the best untried patches (attention + prior)
        candidate = None
        if rounds_left > 0 and (attention is not None or setup.prior is not None):
            candidate_scores = score_patches(
                attention, setup.prior, config.prior_weight, config.patch_selection
            )
            proposal = union_candidate(
                current.patches, candidate_scores, config.patches, tried_ids, config.max_patches
            )
            if proposal:
                candidate = proposal
                tried_ids.update(proposal)
                rounds_left -= 1
        sigma = sigma_at(config, setup, step) if config.optimiser == "reinforce" else 0.0
        traces.append(
            IterationTrace(
                step=step,
                reward=here.reward,
                entropy=here.entropy,
                sigma=sigma,
                tried=tried,
                kept=patch_refs(span, current.patches, current.scores),
                accepted=accepted,
                elapsed_ms=(time.perf_counter() - started) * 1000.0,
            )
        )
        if progress is not None:
            progress({"stage": "latent", "iteration": step, "reward": here.reward})
        # 6. early stop
        assert best is not None
        if best.reward >= config.reward_threshold:
            stopped = "threshold"
            break
        best_so_far.append(best.reward)
        patience = config.plateau_patience
        if (
            patience
            and candidate is None
            and len(best_so_far) > patience
            and best_so_far[-1] - best_so_far[-1 - patience] < config.plateau_tolerance
        ):
            stopped = "plateau"
            break

    # the last update has not been evaluated yet: do it (this is also the T = 0 evaluation)
    scores = yield Evaluation([(current.latents, current.patches)], attend=False)
    final = State(
        current.latents, current.patches, float(scores.rewards[0]), float(scores.entropies[0]), current.scores
    )
    if best is None or final.reward > best.reward:
        best = final
    if not traces:
        initial = final.reward
    return LoopResult(best=best, initial_reward=initial, iterations=traces, stopped=stopped)


def injected_refs(setup: LoopSetup, result: LoopResult) -> list[PatchRef]:
    """The kept patches of the best state (those in the decode), as ``PatchRef``s."""
    return patch_refs(setup.prefix.prompt.query_span, result.best.patches, result.best.scores)
