"""The optimisation loop: prepare the examples, train projector and LoRA, validate, write the weights."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from riad_agent.models.builtin.loading import BUILTIN_ID, BuiltinWeights, read_weights, save_weights
from riad_agent.models.builtin.lora import lora_state
from riad_agent.training.config import Log, TrainConfig
from riad_agent.training.examples import data_hash, expert_for_training, prepare_examples, training_images
from riad_agent.training.trainer import Trainer


def train(
    config: TrainConfig,
    out: Path,
    cache_dir: Path | None,
    log: Log = print,
    examples_cache: Path | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline and write the weights to ``out``; returns the run record.

    ``examples_cache``: a folder that keeps the prepared evidence and cells between runs.
    """
    torch.set_num_threads(config.threads)
    started = time.perf_counter()
    rng = random.Random(config.seed)
    data = training_images(config)
    digest = data_hash(data)
    log(f"training images: {len(data.images)} (data sha256 {digest[:16]})")
    trainer = Trainer(config, cache_dir, log)
    expert = expert_for_training()
    examples = prepare_examples(data, trainer.tower, expert, log, examples_cache)
    prep_seconds = time.perf_counter() - started
    log(f"evidence and cells ready in {prep_seconds:.0f} s")
    rng.shuffle(examples)
    n_val = max(8, int(len(examples) * config.validation_share))
    validation, examples = examples[:n_val], examples[n_val:]
    before = trainer.letter_accuracy(validation, random.Random(config.seed + 1))
    log(f"validation letter accuracy before: {json.dumps(before)}")
    projector_params = list(trainer.projector.parameters())
    lora_params = [p for layer in trainer.lora.values() for p in (layer.lora_a, layer.lora_b)]
    parameters = [
        {"params": projector_params, "lr": config.lr_projector},
        {"params": lora_params, "lr": config.lr_lora},
    ]
    optimiser = torch.optim.AdamW(parameters, weight_decay=0.0)
    base_lrs = [config.lr_projector, config.lr_lora]
    trainer.projector.train()
    losses: list[float] = []
    train_started = time.perf_counter()
    for step in range(config.steps):
        scale = min(1.0, (step + 1) / config.warmup) * (
            0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / config.steps))
        )
        for group, lr in zip(optimiser.param_groups, base_lrs, strict=True):
            group["lr"] = lr * scale
        batch = []
        for _ in range(config.batch_size):
            example = examples[rng.randrange(len(examples))]
            allowed = trainer.maker.subtasks(example.source.label)
            weights = [config.subtask_weights.get(name, 1.0) for name in allowed]
            subtask = rng.choices(allowed, weights=weights)[0]
            batch.append(
                trainer.sequence(example, trainer.maker.ask(example.source.label, subtask, rng), rng)
            )
        loss = trainer.loss(batch)
        optimiser.zero_grad()
        loss.backward()
        for params in (projector_params, lora_params):  # apart, so the projector's grads don't mute LoRA's
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 25 == 0:
            elapsed = time.perf_counter() - train_started
            log(
                f"step {step + 1}/{config.steps} loss {np.mean(losses[-25:]):.3f} ({elapsed / (step + 1):.2f} s/step)"
            )
        if config.validate_every and (step + 1) % config.validate_every == 0 and step + 1 < config.steps:
            trainer.projector.eval()
            middle = trainer.letter_accuracy(validation, random.Random(config.seed + 1))
            trainer.projector.train()
            log(f"validation letter accuracy at step {step + 1}: {json.dumps(middle)}")
    trainer.projector.eval()
    after = trainer.letter_accuracy(validation, random.Random(config.seed + 1))
    log(f"validation letter accuracy after: {json.dumps(after)}")
    record = {
        "model": BUILTIN_ID,
        "config": config.model_dump(),
        "training_images": len(data.images) - n_val,
        "validation_images": n_val,
        "data_sha256": digest,
        "final_loss": float(np.mean(losses[-50:])),
        "validation_before": before,
        "validation_after": after,
        "prepare_seconds": round(prep_seconds, 1),
        "train_seconds": round(time.perf_counter() - train_started, 1),
        "torch": torch.__version__,
    }
    if config.init_from:  # a continued run: keep the record of the run it started from
        record["continued_from"] = read_weights(Path(config.init_from)).record
    save_weights(
        out,
        BuiltinWeights(
            vision=trainer.vision,
            projector={k: v.detach().clone() for k, v in trainer.projector.state_dict().items()},
            lora=lora_state(trainer.lora),
            record=record,
        ),
    )
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return record
