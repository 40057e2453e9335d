"""The model parts being trained, and how a question becomes a differentiable sequence and a loss."""

from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from riad_agent.evidence import StoredPrior, reasoning_input
from riad_agent.knowledge.schema import entries_of
from riad_agent.models.builtin.adapter import ANSWER_START, BUILTIN_PROMPT_BUDGET, BuiltinAdapter
from riad_agent.models.builtin.language import load_language_model
from riad_agent.models.builtin.loading import BUILTIN_ID, read_weights
from riad_agent.models.builtin.lora import add_lora
from riad_agent.models.builtin.vision import EVIDENCE_CHANNELS, Projector, VisionConfig, VisionTower
from riad_agent.question_sets.questions import Question, QuestionMaker
from riad_agent.reasoning.config import DEFAULT_INSTRUCTION
from riad_agent.reasoning.prompt import build_segments
from riad_agent.schemas import KnowledgeHit
from riad_agent.training.config import Log, TrainConfig
from riad_agent.training.examples import Example


def knowledge_hits(category: str, maker: QuestionMaker, rng: random.Random) -> list[KnowledgeHit]:
    """Two entries of the category, the way retrieval returns them (normal and one defect, any order)."""
    spec = maker.specs[category]
    entries = entries_of(spec, source="training")
    chosen = [entries[0], rng.choice(entries[1:])] if len(entries) > 1 else entries[:1]
    rng.shuffle(chosen)
    return [
        KnowledgeHit(
            id=e.id,
            score=1.0,
            dataset=e.dataset,
            category=f"{e.dataset}/{e.category}",
            kind=e.kind,
            defect_type=e.defect_type,
            title=e.title,
            text=e.text,
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
    def sequence(
        self, example: Example, question: Question, rng: random.Random
    ) -> tuple[torch.Tensor, list[int], list[float]]:
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
        request = reasoning_input(
            self._placeholder,
            question.question,
            knowledge=hits,
            expert=None if peaks is None else StoredPrior(example.score, peaks),
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
            noise = (
                torch.randn(config.latent_tokens, text.shape[-1]) * config.latent_noise * self.embedding_rms
            )
            parts.append(self.mean_embedding + noise)
            if rng.random() < config.inject_rate:
                evidence = cells[:, -3]  # per-cell max of the prior
                order = torch.argsort(evidence, descending=True)
                pick = (
                    order[: config.injected_patches]
                    if rng.random() < 0.7
                    else torch.randperm(tokens)[: config.injected_patches]
                )
                parts.append(visual[pick])
        target_text = self.adapter._encode(f"{question.answer}. {question.answer_text}")[
            : 1 + config.answer_tokens
        ]
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
    def letter_accuracy(
        self, examples: list[Example], rng: random.Random, per_image: int = 2
    ) -> dict[str, float]:
        """Accuracy of the answer letter (argmax over the option letters) per subtask, no latents."""
        saved = self.config  # validation: no latent suffix, no evidence dropout
        self.config = saved.model_copy(
            update={"latent_rate": 0.0, "knowledge_rate": 0.5, "evidence_dropout": 0.0}
        )
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
