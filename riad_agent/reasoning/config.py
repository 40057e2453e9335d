"""``LatentConfig``: every knob of the latent loop, with the method's defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from riad_agent.reasoning.injection import Selection

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

    reward: Literal["entropy", "option_confidence", "entropy_expert_map"] = Field(
        default="entropy",
        description="'entropy': 1 - mean normalised top-k entropy over the latent positions and the "
        "answer position (the paper's); "
        "'option_confidence': top probability over the option letters at the answer position; "
        "'entropy_expert_map' (outside information, off by default): (1 - e) * entropy + e * the "
        "agreement of each row's latent attention on the query image with the expert's prior map.",
    )
    expert_map_weight: float = Field(
        default=0.5, ge=0, le=1, description="e: weight of the map agreement in 'entropy_expert_map'."
    )
    top_k: int = Field(default=10, ge=2, le=1000, description="Top-k of the next-token entropy.")
    optimiser: Literal["reinforce", "gradient"] = "reinforce"
    perturbations: int = Field(default=8, ge=2, le=256, description="K Gaussian perturbations per step.")
    mirrored: bool = Field(
        default=False,
        description="Draw K/2 perturbations and use each with both signs (+eps, -eps): the same cost, a "
        "lower-variance update (K must be even).",
    )
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
    plateau_patience: int = Field(
        default=3,
        ge=0,
        le=200,
        description="Stop once the best reward has gained less than plateau_tolerance over this many "
        "iterations and no candidate patch set is pending; 0 = off (run all T iterations). 3 / 0.002 "
        "changed none of 40 generated QA answers at T = 10 (benchmarks/loop_settings.py).",
    )
    plateau_tolerance: float = Field(
        default=0.002, ge=0, le=1, description="Smallest gain of the best reward that counts as progress."
    )
    latent_init: Literal["mean", "token"] = Field(
        default="mean", description="'mean' embedding of the vocabulary, or the embedding of ``think_token``."
    )
    think_token: str = "think"
    inject_patches: bool = True
    patches: int = Field(default=4, ge=1, le=256, description="m new patches per candidate set.")
    max_patches: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Most patches in a row: a candidate is the kept set united with m untried patches.",
    )
    injection_rounds: int = Field(default=3, ge=0, le=200, description="Candidate patch sets tried at most.")
    prior_weight: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Weight of the expert prior in scoring ('gated', 'mixed'); 0 = attention alone.",
    )
    patch_selection: Selection = Field(
        default="prior",
        description="'prior': rank by the expert's prior, attention (by rank) breaks ties; 'gated': "
        "prior x ((1 - w) rank(attention) + w); 'mixed': the old (1 - w) minmax(attention) + w prior. "
        "Chosen on generated data by `riad eval injection` (see injection.py).",
    )
    patch_layout: Literal["interleaved", "after"] = Field(
        default="interleaved",
        description="'interleaved': the row's patches are dealt out after the latents, one group after "
        "each (DMLR), so later latents and their attention see them; 'after': all after the last latent.",
    )
    initial_patches: Literal["prior", "none"] = Field(
        default="prior",
        description="'prior': with an expert prior (and prior_weight > 0) the row starts with its m "
        "strongest patches, as the builtin model was trained; 'none': it starts without patches.",
    )
    accept_margin: float = Field(
        default=0.005,
        ge=0,
        le=1,
        description="A candidate patch set replaces the current one only when its (fp32) reward beats "
        "the current row's by more than this; bf16 batch-slot noise is 0.005-0.02 on GPU.",
    )
    attention_layers: list[int] | None = Field(
        default=None,
        description="Decoder layers whose attention scores patches (default: 1/2 and 3/4 depth).",
    )
    rationale_tokens: int = Field(default=24, ge=0, le=512, description="Greedy tokens of the rationale.")
    instruction: str = DEFAULT_INSTRUCTION
    knowledge_chars: int = Field(default=600, ge=40, description="Characters kept of each knowledge entry.")
    knowledge_hits: int | None = Field(
        default=None, ge=0, description="Entries put in the prompt (None = all)."
    )
    max_templates: int | None = Field(
        default=None, ge=0, description="Template images shown (None = all given)."
    )
    debias: Literal["none", "cyclic", "dihedral"] = Field(
        default="dihedral",
        description="'dihedral': the answer is the option whose probability, averaged over every cyclic order "
        "of the options and of their reverse, is highest (a preference for a letter's place cancels, and "
        "reversing the options changes nothing); 'cyclic': the cyclic orders only; 'none': the raw letter.",
    )
    follow_exemplars: bool = Field(
        default=True,
        description="A question whose options name the defect type a registered product's labelled "
        "exemplars clearly point to (ReasoningInput.exemplar_type) is answered with that option; the "
        "model's own choice stays in the trace (answer_source, model_answer). Off: the model decides.",
    )
    follow_confident_verdict: bool = Field(
        default=True,
        description="An asked question's options that contradict a confident expert score (calibrated on "
        "references: >= 1 - verdict_margin anomalous, <= verdict_margin normal; 'No defect' on a part "
        "scored 0.99, 'Yes' to 'Is there any defect?' on one scored 0.01) are not chosen: the answer is "
        "the best of the other options, the model's own choice stays in the trace (answer_source "
        "'verdict', model_answer). Off: the model decides, and the report says when it disagrees.",
    )
    verdict_margin: float = Field(
        default=0.2,
        ge=0.0,
        lt=0.5,
        description="How far from 0 or 1 an expert score still counts as confident (follow_confident_verdict).",
    )
    exemplar_images: bool = Field(
        default=True,
        description="Show a registered product's defect-exemplar crops as extra images (models that take them).",
    )

    @model_validator(mode="after")
    def _mirrored_needs_pairs(self) -> LatentConfig:
        if self.mirrored and self.perturbations % 2:
            raise ValueError(
                f"mirrored perturbations come in pairs: perturbations must be even, got {self.perturbations}"
            )
        return self


def config_for(vlm: object, **overrides: object) -> LatentConfig:
    """A config with the model's own defaults (``vlm.latent_defaults``, e.g. its prompt budget) and ``overrides``."""
    defaults = dict(getattr(vlm, "latent_defaults", {}))
    return LatentConfig.model_validate({**defaults, **overrides})
