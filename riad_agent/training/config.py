"""``TrainConfig``: every knob of a builtin-model training run (recorded with the weights)."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

Log = Callable[[str], None]


class TrainConfig(BaseModel):
    """Every knob of a training run (recorded with the weights)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    steps: int = Field(default=800, ge=1)
    batch_size: int = Field(default=4, ge=1)
    lr_projector: float = 1e-3
    lr_lora: float = 3e-4
    warmup: int = 30
    lora_rank: int = Field(default=8, ge=0, description="0 = projector only.")
    synthetic_per_category: int = 240
    elpv_per_class: int | None = 150
    mvtec_root: str | None = None
    knowledge_rate: float = 0.5
    latent_rate: float = 0.6
    inject_rate: float = 0.5
    evidence_dropout: float = Field(
        default=0.1, description="Share of examples shown without expert evidence."
    )
    latent_tokens: int = 4
    injected_patches: int = 4
    latent_noise: float = Field(default=0.3, description="Std of the latent perturbation, x embedding RMS.")
    answer_tokens: int = Field(default=12, description="Option-text tokens taught after the letter.")
    letter_weight: float = Field(default=0.75, description="Share of the loss on the answer letter.")
    validation_share: float = 0.05
    threads: int = 2
    init_from: str | None = Field(
        default=None, description="Continue from this weights file (projector + LoRA)."
    )
    validate_every: int = Field(
        default=0, ge=0, description="Validation letter accuracy every N steps (0 = only at the ends)."
    )
    subtask_weights: dict[str, float] = Field(
        default_factory=dict,
        description="Relative draw weight per subtask (default 1 each), among those an image allows.",
    )
