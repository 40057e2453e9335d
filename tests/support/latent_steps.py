"""Single steps of the latent loop, driven alone: what the loop tests call directly.

Production drives whole loops (:func:`riad_agent.reasoning.latent_loop.run_latent_loop`); these
wrappers drive one evaluation or one iteration of the same generators.
"""

from __future__ import annotations

import torch

from riad_agent.models.base import VisionLanguageModel
from riad_agent.reasoning.config import LatentConfig
from riad_agent.reasoning.latent_loop import (
    Evaluation,
    LoopSetup,
    State,
    StepOutcome,
    drive,
    gradient_steps,
    reinforce_steps,
    score_batch,
)


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
    (scores,) = score_batch(vlm, config, [(setup, Evaluation(rows, attend))])
    return scores.rewards, scores.entropies, scores.attention


def reinforce_step(
    vlm: VisionLanguageModel,
    setup: LoopSetup,
    config: LatentConfig,
    current: State,
    candidate: list[int] | None,
    step: int,
    generator: torch.Generator,
) -> StepOutcome:
    """One REINFORCE iteration: returns the updated latents, every evaluated state, the attention."""
    return drive(vlm, setup, config, reinforce_steps(setup, config, current, candidate, step, generator))


def gradient_step(
    vlm: VisionLanguageModel,
    setup: LoopSetup,
    config: LatentConfig,
    current: State,
    candidate: list[int] | None,
) -> StepOutcome:
    """One exact-gradient ascent iteration on the (differentiable) reward of the current row."""
    return drive(vlm, setup, config, gradient_steps(setup, config, current, candidate))
