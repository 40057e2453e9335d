"""The latent reasoning loop of Reason-IAD, top to bottom.

Setting. The prompt (instruction, knowledge, templates, query image, question) has been run once as
a prefix; its KV cache is shared by everything below and never mutated. A *row* is what follows the
prefix: ``[L latent embeddings] + [m injected patch features] + [answer-start tokens]``. Rows are
evaluated in one packed batch on the shared cache, so an iteration costs only the suffix tokens.

Reward of a row (``reward.py``): 1 - mean normalised top-k entropy of the next-token distributions at
the L latent positions and at the answer position (or, as a variant, the top option-letter
probability at the answer position). The answer position is included because, under causal
attention, it is the only rewarded position that sees the patches spliced after the latents:
a reward over the latent positions alone could never be changed by an injection.

Per iteration t (T at most):
  1. sigma_t = sigma * rms(E) * decay^t;  eps_k ~ N(0, sigma_t^2), k = 1..K  (seeded generator)
  2. one batch: the current row z (with patch set S), the K perturbed rows z + eps_k, and, when a
     candidate patch set S' is pending, the row (z, S'); the current row also returns the latents'
     attention onto the query image's visual tokens (q/k of the chosen layers)
  3. accept S' only if its reward beats the current row's; keep the best (z, S) ever evaluated
  4. update z += lr * normalise(mean_k((R_k - mean R) * eps_k) / sigma_t^2)   [REINFORCE]
     or z += lr * normalise(dR/dz)                                               [exact gradient]
  5. new candidate S' = top-m patches by (attention, expert prior) score, if rounds remain
  6. stop early once the best reward reaches the threshold
Finally the last z is evaluated too, and the best state goes to the decode (patches included).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from riad_agent.models.base import PrefixState, VisionLanguageModel
from riad_agent.reasoning.config import LatentConfig
from riad_agent.reasoning.injection import patch_refs, score_patches, select_patches
from riad_agent.reasoning.reward import entropy_reward, option_confidence_reward, topk_entropy
from riad_agent.schemas import IterationTrace, PatchRef


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


def build_row(setup: LoopSetup, latents: torch.Tensor, patches: list[int]) -> torch.Tensor:
    """``[latents] + [real merged features of the chosen query patches] + [answer start]``."""
    span = setup.prefix.prompt.query_span
    parts = [latents, span.features[patches].to(latents.dtype), setup.answer_start.to(latents.dtype)]
    return torch.cat(parts, dim=0)


def evaluate(
    vlm: VisionLanguageModel,
    setup: LoopSetup,
    config: LatentConfig,
    rows: list[tuple[torch.Tensor, list[int]]],
    attend: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Rewards and mean latent entropies of rows ``(latents, patches)`` in one packed forward.

    With ``attend`` the first row also returns its latents' attention onto the query image.
    """
    n_latent = int(setup.latents.shape[0])
    built = [build_row(setup, z, s) for z, s in rows]
    positions = [[*list(range(n_latent)), int(r.shape[0]) - 1] for r in built]
    attend_from = [list(range(n_latent))] + [[] for _ in built[1:]] if attend else None
    injected = [(n_latent, list(s)) for _, s in rows]
    out = vlm.suffix_forward(
        setup.prefix,
        built,
        positions,
        attend_from=attend_from,
        attention_layers=config.attention_layers,
        injected=injected,
    )
    logits = torch.stack(out.logits)  # rows x (L latent positions + answer position) x vocab
    entropy = topk_entropy(logits, config.top_k).mean(-1)
    if config.reward == "entropy":
        reward = entropy_reward(logits, config.top_k)
    else:
        reward = option_confidence_reward(logits[:, n_latent], setup.option_ids)
    attention = out.attention[0] if out.attention is not None else None
    return reward, entropy, attention


def sigma_at(config: LatentConfig, setup: LoopSetup, step: int) -> float:
    return config.sigma * setup.embedding_rms * config.sigma_decay**step


def _normalised(direction: torch.Tensor, config: LatentConfig, setup: LoopSetup) -> torch.Tensor:
    if not config.normalise_update:
        return config.lr * direction
    rms = direction.pow(2).mean().sqrt()
    if float(rms) == 0.0:
        return torch.zeros_like(direction)
    return config.lr * setup.embedding_rms * direction / rms


def reinforce_step(
    vlm: VisionLanguageModel,
    setup: LoopSetup,
    config: LatentConfig,
    current: State,
    candidate: list[int] | None,
    step: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, list[State], torch.Tensor | None]:
    """One REINFORCE iteration: returns the updated latents, every evaluated state, the attention."""
    sigma = sigma_at(config, setup, step)
    z = current.latents
    eps = torch.randn((config.perturbations, *z.shape), generator=generator).to(z) * sigma
    rows = [(z, current.patches)] + [(z + e, current.patches) for e in eps]
    if candidate is not None:
        rows.append((z, candidate))
    with torch.no_grad():
        rewards, entropies, attention = evaluate(vlm, setup, config, rows, attend=setup.inject)
    evaluated = [
        State(latents, patches, float(r), float(h))
        for (latents, patches), r, h in zip(rows, rewards, entropies, strict=True)
    ]
    perturbed = rewards[1 : 1 + config.perturbations]
    advantage = (perturbed - perturbed.mean()).to(z)
    estimate = (advantage.view(-1, 1, 1) * eps).mean(0) / sigma**2
    return z + _normalised(estimate, config, setup), evaluated, attention


def gradient_step(
    vlm: VisionLanguageModel,
    setup: LoopSetup,
    config: LatentConfig,
    current: State,
    candidate: list[int] | None,
) -> tuple[torch.Tensor, list[State], torch.Tensor | None]:
    """One exact-gradient ascent iteration on the (differentiable) reward of the current row."""
    z = current.latents.detach().clone().requires_grad_(True)
    rows = [(z, current.patches)] + ([(z, candidate)] if candidate is not None else [])
    with torch.enable_grad():
        rewards, entropies, attention = evaluate(vlm, setup, config, rows, attend=setup.inject)
        (grad,) = torch.autograd.grad(rewards[0], z)
    evaluated = [
        State(current.latents, patches, float(r), float(h))
        for (_, patches), r, h in zip(rows, rewards.detach(), entropies.detach(), strict=True)
    ]
    return current.latents + _normalised(grad.detach(), config, setup), evaluated, attention


def run_latent_loop(
    vlm: VisionLanguageModel,
    setup: LoopSetup,
    config: LatentConfig,
    progress: Callable[[dict[str, object]], None] | None = None,
) -> LoopResult:
    """Optimise the latents (and the injected patch set) for ``setup.steps`` iterations at most."""
    generator = torch.Generator().manual_seed(setup.seed)
    span = setup.prefix.prompt.query_span
    current = State(setup.latents.float(), [], float("nan"), float("nan"))
    best: State | None = None
    initial = float("nan")
    candidate: list[int] | None = None
    rounds_left = config.injection_rounds if setup.inject else 0
    candidate_scores: torch.Tensor | None = None
    traces: list[IterationTrace] = []

    for step in range(setup.steps):
        started = time.perf_counter()
        # 1-2. evaluate the current row, its perturbations and the pending candidate; update z
        if config.optimiser == "reinforce":
            new_latents, evaluated, attention = reinforce_step(
                vlm, setup, config, current, candidate, step, generator
            )
        else:
            new_latents, evaluated, attention = gradient_step(vlm, setup, config, current, candidate)
        for state in evaluated:
            state.scores = current.scores
        if candidate is not None:
            evaluated[-1].scores = candidate_scores
        here = evaluated[0]
        if step == 0:
            initial = here.reward
        # 3. accept the candidate patch set only if it raises the reward; keep the best state seen
        accepted = candidate is not None and evaluated[-1].reward > here.reward
        if accepted:
            here = evaluated[-1]
        for state in evaluated:
            if best is None or state.reward > best.reward:
                best = dataclasses.replace(state, latents=state.latents.detach().clone())
        tried = patch_refs(span, candidate, candidate_scores) if candidate is not None else []
        # 4. the update (computed with the current patch set) moves the latents
        current = State(new_latents.detach(), list(here.patches), here.reward, here.entropy, here.scores)
        # 5. next candidate from the latents' attention (+ expert prior)
        candidate = None
        if rounds_left > 0 and attention is not None:
            candidate_scores = score_patches(attention, setup.prior, config.prior_weight)
            proposal = select_patches(candidate_scores, config.patches)
            if sorted(proposal) != sorted(current.patches):
                candidate = proposal
                rounds_left -= 1
        sigma = sigma_at(config, setup, step) if config.optimiser == "reinforce" else 0.0
        traces.append(
            IterationTrace(
                step=step,
                reward=here.reward,
                entropy=here.entropy,
                sigma=sigma,
                injected=tried,
                accepted=accepted,
                elapsed_ms=(time.perf_counter() - started) * 1000.0,
            )
        )
        if progress is not None:
            progress({"stage": "latent", "iteration": step, "reward": here.reward})
        # 6. early stop
        assert best is not None
        if best.reward >= config.reward_threshold:
            break

    # the last update has not been evaluated yet: do it (this is also the T = 0 evaluation)
    with torch.no_grad():
        rewards, entropies, _ = evaluate(
            vlm, setup, config, [(current.latents, current.patches)], attend=False
        )
    final = State(current.latents, current.patches, float(rewards[0]), float(entropies[0]), current.scores)
    if best is None or final.reward > best.reward:
        best = final
    if not traces:
        initial = final.reward
    return LoopResult(best=best, initial_reward=initial, iterations=traces)


def injected_refs(setup: LoopSetup, result: LoopResult) -> list[PatchRef]:
    """The kept patches of the best state, as ``PatchRef``s."""
    return patch_refs(setup.prefix.prompt.query_span, result.best.patches, result.best.scores)
