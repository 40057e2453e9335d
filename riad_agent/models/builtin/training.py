"""Training of the builtin model: the projector (and LoRA on SmolLM2) on MMAD-style questions, on CPU.

Pipeline, top to bottom:

1. labelled training images (``riad_agent.qa.sources``, train splits only): synthetic parts with
   every defect kind, ELPV train cells, MVTec normal images;
2. the vision expert scores each image against its reference pool (its [0, 1] prior map is the
   evidence channels), the frozen vision tower turns each into cells, once;
3. each step draws questions (``riad_agent.qa.questions``, the seven MMAD subtasks, options shuffled),
   builds the very prompt the latent reasoner builds (same segments, same adapter layout), sometimes
   with retrieved-style knowledge, and sometimes with the suffix the latent loop produces (L latent
   embeddings near their initial value, then m query patches), then teaches the answer
   ``"<letter>. <option text><|im_end|>"`` (the letter weighs most);
4. the projector and the LoRA deltas are saved in one safetensors file with a record of the run.

Everything is seeded; the same command gives the same data, order and initialisation.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from riad_agent.expert.expert import ExpertConfig, PatchCoreExpert
from riad_agent.expert.features import FeatureConfig
from riad_agent.knowledge.schema import entries_of
from riad_agent.models.builtin.adapter import ANSWER_START, BuiltinAdapter
from riad_agent.models.builtin.language import load_language_model
from riad_agent.models.builtin.loading import BUILTIN_ID, BuiltinWeights, read_weights, save_weights
from riad_agent.models.builtin.lora import add_lora, lora_state
from riad_agent.models.builtin.vision import EVIDENCE_CHANNELS, Projector, VisionConfig, VisionTower
from riad_agent.protocols import ReasoningInput
from riad_agent.qa.questions import Question, QuestionMaker
from riad_agent.qa.sources import LabelledSet, SourceImage, elpv_set, mvtec_set, synthetic_set
from riad_agent.reasoning.config import BUILTIN_PROMPT_BUDGET, DEFAULT_INSTRUCTION
from riad_agent.reasoning.prompt import build_segments
from riad_agent.schemas import KnowledgeHit

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
    evidence_dropout: float = Field(default=0.1, description="Share of examples shown without expert evidence.")
    latent_tokens: int = 4
    injected_patches: int = 4
    latent_noise: float = Field(default=0.3, description="Std of the latent perturbation, x embedding RMS.")
    answer_tokens: int = Field(default=12, description="Option-text tokens taught after the letter.")
    letter_weight: float = Field(default=0.75, description="Share of the loss on the answer letter.")
    validation_share: float = 0.05
    threads: int = 2
    init_from: str | None = Field(default=None, description="Continue from this weights file (projector + LoRA).")
    validate_every: int = Field(default=0, ge=0, description="Validation letter accuracy every N steps (0 = only at the ends).")
    subtask_weights: dict[str, float] = Field(
        default_factory=dict,
        description="Relative draw weight per subtask (default 1 each), among those an image allows.",
    )


@dataclass
class Example:
    """One training image, ready: its cells (appearance + evidence), the expert's score, its labels."""

    source: SourceImage
    cells: torch.Tensor  # grid*grid x cell_dim
    score: float  # the expert's calibrated image score


def training_images(config: TrainConfig) -> LabelledSet:
    data = synthetic_set(config.synthetic_per_category, seed=config.seed)
    if config.elpv_per_class != 0:
        data.extend(elpv_set("train", config.elpv_per_class, seed=config.seed))
    if config.mvtec_root:
        data.extend(mvtec_set(Path(config.mvtec_root), "train"))
    return data


def data_hash(data: LabelledSet) -> str:
    """sha256 over every training image's key and labels (and mask bytes): what was trained on."""
    digest = hashlib.sha256()
    for item in data.images:
        label = item.label
        digest.update(f"{item.key}|{item.pool}|{label.category}|{label.anomalous}|{label.defect_type}".encode())
        if label.mask is not None:
            digest.update(np.packbits(label.mask).tobytes())
    return digest.hexdigest()


def prepare_examples(
    data: LabelledSet, tower: VisionTower, expert: PatchCoreExpert, log: Log, cache: Path | None = None
) -> list[Example]:
    """Expert evidence against each image's pool, then the tower's cells, for every image.

    With ``cache`` (a folder), the cells are stored under a name made of the data hash and the vision
    and expert configurations, and a later run with the same three loads them instead.
    """
    stored = None
    if cache is not None:
        fingerprint = f"{data_hash(data)}|{tower.config.model_dump_json()}|{expert.config.model_dump_json()}"
        stored = cache / f"examples-{hashlib.sha256(fingerprint.encode()).hexdigest()[:20]}.pt"
        if stored.is_file():
            saved = torch.load(stored)
            if saved["keys"] == [item.key for item in data.images] and "scores" in saved:
                log(f"  evidence and cells loaded from {stored}")
                pairs = zip(saved["cells"], saved["scores"].tolist(), strict=True)
                return [Example(item, cells, score) for item, (cells, score) in zip(data.images, pairs, strict=True)]
    examples = _compute_examples(data, tower, expert, log)
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "keys": [e.source.key for e in examples],
                "cells": torch.stack([e.cells for e in examples]),
                "scores": torch.tensor([e.score for e in examples], dtype=torch.float64),
            },
            stored,
        )
    return examples


def _compute_examples(data: LabelledSet, tower: VisionTower, expert: PatchCoreExpert, log: Log) -> list[Example]:
    banks = {}
    for pool, references in data.pools.items():
        banks[pool] = expert.fit([load() for _, load in references])
    examples: list[Example] = []
    started = time.perf_counter()
    batch: list[tuple[SourceImage, Image.Image, np.ndarray, float]] = []

    def flush() -> None:
        cells = tower.cells([image for _, image, _, _ in batch], [prior for _, _, prior, _ in batch])
        examples.extend(Example(item, c, score) for (item, _, _, score), c in zip(batch, cells, strict=True))
        batch.clear()

    for index, item in enumerate(data.images, start=1):
        image = item.load()
        anomaly = expert.analyse_with_bank(image, banks[item.pool])
        batch.append((item, image, anomaly.prior_map(), anomaly.score))
        if len(batch) == 16:
            flush()
        if index % 200 == 0:
            log(f"  evidence {index}/{len(data.images)} ({time.perf_counter() - started:.0f} s)")
    if batch:
        flush()
    return examples


def knowledge_hits(category: str, maker: QuestionMaker, rng: random.Random) -> list[KnowledgeHit]:
    """Two entries of the category, the way retrieval returns them (normal and one defect, any order)."""
    spec = maker.specs[category]
    entries = entries_of(spec, source="training")
    chosen = [entries[0], rng.choice(entries[1:])] if len(entries) > 1 else entries[:1]
    rng.shuffle(chosen)
    return [
        KnowledgeHit(
            id=e.id, score=1.0, dataset=e.dataset, category=f"{e.dataset}/{e.category}", kind=e.kind,
            defect_type=e.defect_type, title=e.title, text=e.text,
        )
        for e in chosen
    ]


class Trainer:
    """Holds the model parts and turns questions into differentiable sequences."""

    def __init__(self, config: TrainConfig, cache_dir: Path | None, log: Log) -> None:
        self.config = config
        self.log = log
        torch.manual_seed(config.seed)
        model, tokenizer = load_language_model(cache_dir, torch.device("cpu"), torch.float32)
        self.model = model
        self.vision = VisionConfig()
        self.tower = VisionTower(self.vision)
        table = model.get_input_embeddings().weight.detach()
        self.embedding_rms = float(table.pow(2).mean().sqrt())
        self.mean_embedding = table.mean(0)
        self.projector = Projector(self.vision, int(model.config.hidden_size), self.embedding_rms)
        self.lora = add_lora(model, rank=config.lora_rank, seed=config.seed) if config.lora_rank > 0 else {}
        if config.init_from:
            self._continue_from(Path(config.init_from))
        self.adapter = BuiltinAdapter(model, tokenizer, self.tower, self.projector, model_id=BUILTIN_ID)
        self.maker = QuestionMaker()
        self.eos = int(tokenizer.eos_token_id)
        self.answer_start_ids = self.adapter._encode(ANSWER_START)
        self._placeholder = Image.new("RGB", (8, 8))

    def _continue_from(self, path: Path) -> None:
        weights = read_weights(path)
        self.projector.load_state_dict(weights.projector)
        with torch.no_grad():
            for name, layer in self.lora.items():
                layer.lora_a.copy_(weights.lora[f"{name}.lora_a"])
                layer.lora_b.copy_(weights.lora[f"{name}.lora_b"])
        self.log(f"continuing from {path}")

    # -- one example -> (embeddings, target ids, loss weights) ----------------------------------
    def sequence(self, example: Example, question: Question, rng: random.Random) -> tuple[torch.Tensor, list[int], list[float]]:
        config = self.config
        with_knowledge = rng.random() < config.knowledge_rate
        hits = knowledge_hits(example.source.label.category, self.maker, rng) if with_knowledge else []
        cells = example.cells
        dropped = rng.random() < config.evidence_dropout
        if dropped:  # as when no expert ran: zero evidence, flag off, no evidence line
            cells = cells.clone()
            cells[:, -EVIDENCE_CHANNELS:] = 0.0
        grid = self.vision.grid
        # the per-cell maxima as a grid-sized map give the adapter the same evidence line as the full map
        peaks = None if dropped else cells[:, -3].reshape(grid, grid).numpy()
        request = ReasoningInput(
            image=self._placeholder,
            question=question.question,
            knowledge=hits,
            patch_prior=peaks,
            image_score=None if dropped else example.score,
            category=example.source.label.category if with_knowledge else None,
        )
        chars, count, _ = BUILTIN_PROMPT_BUDGET
        segments = build_segments(request, DEFAULT_INSTRUCTION, chars, count)
        layout = self.adapter.layout(segments)
        ids = torch.tensor(layout.ids)
        embed = self.model.get_input_embeddings()
        with torch.no_grad():
            text = embed(ids)
        visual = self.projector(cells)
        start = layout.images[0][0]
        tokens = visual.shape[0]
        parts = [text[:start], visual, text[start + tokens :]]
        if rng.random() < config.latent_rate:
            noise = torch.randn(config.latent_tokens, text.shape[-1]) * config.latent_noise * self.embedding_rms
            parts.append(self.mean_embedding + noise)
            if rng.random() < config.inject_rate:
                evidence = cells[:, -3]  # per-cell max of the prior
                order = torch.argsort(evidence, descending=True)
                pick = order[: config.injected_patches] if rng.random() < 0.7 else torch.randperm(tokens)[: config.injected_patches]
                parts.append(visual[pick])
        target_text = self.adapter._encode(f"{question.answer}. {question.answer_text}")[: 1 + config.answer_tokens]
        target = [*target_text, self.eos]
        with torch.no_grad():
            suffix = embed(torch.tensor(self.answer_start_ids + target[:-1]))
        parts.append(suffix)
        rest = (1.0 - config.letter_weight) / max(1, len(target) - 1)
        weights = [config.letter_weight] + [rest] * (len(target) - 1)
        return torch.cat(parts), target, weights

    def loss(self, batch: list[tuple[torch.Tensor, list[int], list[float]]]) -> torch.Tensor:
        lengths = [int(seq.shape[0]) for seq, _, _ in batch]
        longest = max(lengths)
        hidden = batch[0][0].shape[-1]
        embeds = torch.zeros(len(batch), longest, hidden)
        mask = torch.zeros(len(batch), longest, dtype=torch.long)
        for row, (seq, _, _) in enumerate(batch):
            embeds[row, : seq.shape[0]] = seq
            mask[row, : seq.shape[0]] = 1
        positions = torch.arange(longest).expand(len(batch), -1)
        out = self.model.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions)
        rows, cols, targets, weights = [], [], [], []
        for row, ((_, target, weight), length) in enumerate(zip(batch, lengths, strict=True)):
            first = length - len(target)  # the position that predicts target[0]
            for j, (token, w) in enumerate(zip(target, weight, strict=True)):
                rows.append(row)
                cols.append(first + j)
                targets.append(token)
                weights.append(w)
        logits = self.model.lm_head(out.last_hidden_state[torch.tensor(rows), torch.tensor(cols)])
        losses = F.cross_entropy(logits.float(), torch.tensor(targets), reduction="none")
        return (losses * torch.tensor(weights)).sum() / len(batch)

    @torch.no_grad()
    def letter_accuracy(self, examples: list[Example], rng: random.Random, per_image: int = 2) -> dict[str, float]:
        """Accuracy of the answer letter (argmax over the option letters) per subtask, no latents."""
        saved = self.config  # validation: no latent suffix, no evidence dropout
        self.config = saved.model_copy(update={"latent_rate": 0.0, "knowledge_rate": 0.5, "evidence_dropout": 0.0})
        tallies: dict[str, list[int]] = {}
        try:
            for example in examples:
                subtasks = self.maker.subtasks(example.source.label)
                for subtask in rng.sample(subtasks, min(per_image, len(subtasks))):
                    question = self.maker.ask(example.source.label, subtask, rng)
                    seq, target, _ = self.sequence(example, question, rng)
                    out = self.model.model(inputs_embeds=seq[None])
                    logits = self.model.lm_head(out.last_hidden_state[0, -len(target)])
                    letters = self.adapter.option_token_ids(list(question.question.options))
                    scores = {k: max(float(logits[i]) for i in ids) for k, ids in letters.items()}
                    hit = max(scores, key=lambda k: scores[k]) == question.answer
                    tallies.setdefault(subtask, []).append(int(hit))
        finally:
            self.config = saved
        return {k: sum(v) / len(v) for k, v in sorted(tallies.items())}


def expert_for_training() -> PatchCoreExpert:
    """The vision expert whose evidence the model is trained on (the defaults, 256 px)."""
    return PatchCoreExpert(ExpertConfig(features=FeatureConfig(image_size=256)), cache_dir=None)


def train(
    config: TrainConfig, out: Path, cache_dir: Path | None, log: Log = print, examples_cache: Path | None = None
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
        scale = min(1.0, (step + 1) / config.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / config.steps)))
        for group, lr in zip(optimiser.param_groups, base_lrs, strict=True):
            group["lr"] = lr * scale
        batch = []
        for _ in range(config.batch_size):
            example = examples[rng.randrange(len(examples))]
            allowed = trainer.maker.subtasks(example.source.label)
            weights = [config.subtask_weights.get(name, 1.0) for name in allowed]
            subtask = rng.choices(allowed, weights=weights)[0]
            batch.append(trainer.sequence(example, trainer.maker.ask(example.source.label, subtask, rng), rng))
        loss = trainer.loss(batch)
        optimiser.zero_grad()
        loss.backward()
        for params in (projector_params, lora_params):  # apart, so the projector's grads don't mute LoRA's
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 25 == 0:
            elapsed = time.perf_counter() - train_started
            log(f"step {step + 1}/{config.steps} loss {np.mean(losses[-25:]):.3f} ({elapsed / (step + 1):.2f} s/step)")
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
