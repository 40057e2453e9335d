"""``LatentConfig``: every knob of the latent loop, with the method's defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_INSTRUCTION = (
    "You are an industrial inspector. Compare the query image with the normal template images and the "
    "reference knowledge, then answer the question."
)


class LatentConfig(BaseModel):
    """Configuration of :class:`~riad_agent.reasoning.reasoner.LatentReasoner`.

    Step sizes are relative to the RMS of the model's input embedding table, so one config works
    across model sizes. ``steps``/``latent_tokens``, when set, override the request's values.
    """

    model_config = ConfigDict(extra="forbid")

    reward: Literal["entropy", "option_confidence"] = Field(
        default="entropy",
        description="'entropy': 1 - mean normalised top-k entropy over the latent positions and the "
        "answer position (the paper's); "
        "'option_confidence': top probability over the option letters at the answer position.",
    )
    top_k: int = Field(default=10, ge=2, le=1000, description="Top-k of the next-token entropy.")
    optimiser: Literal["reinforce", "gradient"] = "reinforce"
    perturbations: int = Field(default=8, ge=2, le=256, description="K Gaussian perturbations per step.")
    sigma: float = Field(default=0.1, gt=0, description="Perturbation std, relative to the embedding RMS.")
    sigma_decay: float = Field(default=0.9, gt=0, le=1, description="Sigma multiplier per iteration.")
    lr: float = Field(
        default=0.05, gt=0, description="Step size (relative to embedding RMS when normalised)."
    )
    normalise_update: bool = Field(default=True, description="Scale each update to RMS = lr * embedding RMS.")
    steps: int | None = Field(
        default=None, ge=0, le=200, description="Iterations T; None = the request's latent_steps (10)."
    )
    latent_tokens: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Latent think tokens L; None = the request's latent_tokens (4).",
    )
    reward_threshold: float = Field(
        default=0.98, gt=0, le=1, description="Stop once the best reward reaches it."
    )
    latent_init: Literal["mean", "token"] = Field(
        default="mean", description="'mean' embedding of the vocabulary, or the embedding of ``think_token``."
    )
    think_token: str = "think"
    inject_patches: bool = True
    patches: int = Field(default=4, ge=1, le=256, description="m patches spliced after the latents.")
    injection_rounds: int = Field(default=3, ge=0, le=200, description="Candidate patch sets tried at most.")
    prior_weight: float = Field(default=0.5, ge=0, le=1, description="Weight of the expert prior in scoring.")
    attention_layers: list[int] | None = Field(
        default=None,
        description="Decoder layers whose attention scores patches (default: 1/2 and 3/4 depth).",
    )
    rationale_tokens: int = Field(default=24, ge=0, le=512, description="Greedy tokens of the rationale.")
    instruction: str = DEFAULT_INSTRUCTION
    knowledge_chars: int = Field(default=600, ge=40, description="Characters kept of each knowledge entry.")
    knowledge_hits: int | None = Field(default=None, ge=0, description="Entries put in the prompt (None = all).")
    max_templates: int | None = Field(default=None, ge=0, description="Template images shown (None = all given).")


def config_for(vlm: object, **overrides: object) -> LatentConfig:
    """A config with the model's own defaults (``vlm.latent_defaults``, e.g. its prompt budget) and ``overrides``."""
    defaults = dict(getattr(vlm, "latent_defaults", {}))
    return LatentConfig.model_validate({**defaults, **overrides})
