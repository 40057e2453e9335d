"""The builtin compact VLM behind the same adapter protocol as Qwen-VL and LLaVA.

Prompt layout (SmolLM2's chat format)::

    <|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n segments... | suffix rows (latents,
    patches, "<|im_end|>\\n<|im_start|>assistant\\n")
    image segment = grid*grid visual tokens = projector(EfficientNet cells + expert evidence)
                    + for the query, when the expert ran: one line stating its evidence (vision.evidence_sentence)

Positions are plain 1-D (Llama RoPE). The language model is a plain ``LlamaForCausalLM`` (LoRA
deltas merged at load), so prefix caching, packed suffixes and decoding are the shared
:class:`~riad_agent.models.hf_batch.BatchedHFDecoderAdapter` code, exactly as for the hub models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from riad_agent.errors import InvalidImageError
from riad_agent.models.base import (
    ImageSegment,
    PreparedPrompt,
    Segment,
    TextSegment,
    VisualSpan,
    check_image,
    labelled_segments,
)
from riad_agent.models.builtin.vision import (
    Projector,
    VisionTower,
    cell_boxes,
    evidence_cells,
    evidence_sentence,
)
from riad_agent.models.hf_batch import BatchedHFDecoderAdapter

SYSTEM_PROMPT = "You are an industrial inspector."
ANSWER_START = "<|im_end|>\n<|im_start|>assistant\n"

BUILTIN_PROMPT_BUDGET = (160, 2, 0)
"""(characters per knowledge entry, entries, template images) in the builtin model's prompt: what it
was trained with (its references reach it as the expert's evidence, not as template images). The
reasoner reads it through :attr:`BuiltinAdapter.latent_defaults`."""


@dataclass
class PromptLayout:
    """Token ids of a prompt with room for visual tokens, and where each image's tokens go."""

    ids: list[int]
    images: list[tuple[int, ImageSegment]]


class BuiltinAdapter(BatchedHFDecoderAdapter):
    """A :class:`~riad_agent.models.base.VisionLanguageModel`: EfficientNet-Lite0 + projector + SmolLM2."""

    # the system turn, instruction and knowledge before the query image repeat across inspections
    reuses_prompt_head: ClassVar[bool] = True

    latent_defaults: ClassVar[dict[str, object]] = {
        **dict(
            zip(("knowledge_chars", "knowledge_hits", "max_templates"), BUILTIN_PROMPT_BUDGET, strict=True)
        ),
        # trained with the patches after the latents; interleaving them cost 2 of 40 QA answers
        "patch_layout": "after",
        # on 2 CPU cores a row is the loop's cost: K = 4 instead of 8 took 23-25 % off a QA answer and
        # changed 1 of 40 generated answers (5 of 244 shared); the reward gains less (0.16 vs 0.28). docs/results.md, benchmarks/loop_settings.py
        "perturbations": 4,
        # its "rationale" only repeats an option's text, sometimes another option's than the answer
        # ("B. Stain" for the answer B "Colour defect"): the letter alone, 0.4-0.5 s less per reasoned
        # inspection on 2 cores. docs/results.md ("The builtin decodes no rationale")
        "rationale_tokens": 1,
    }

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        tower: VisionTower,
        projector: Projector,
        model_id: str,
        max_image_pixels: int = 40_000_000,
        system_prompt: str = SYSTEM_PROMPT,
    ) -> None:
        self._bind(model, tokenizer, model_id)
        self.tower = tower
        self.projector = projector.eval()
        self.max_image_pixels = max_image_pixels
        self.system_prompt = system_prompt
        self.grid = tower.config.grid
        self.eos_token_ids = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
        self._slot_id = int(tokenizer.pad_token_id or 0)  # placeholder ids under the visual tokens

    # -- model pieces (a causal LM: model.model is the decoder) ----------------------------------
    def _language_model(self) -> Any:
        return self.model.model

    def _decoder_layers(self) -> Any:
        return self.model.model.layers

    def _text_positions(self, positions: torch.Tensor) -> torch.Tensor:
        return positions.view(1, -1)

    def answer_start(self) -> torch.Tensor:
        return self.embed_text(ANSWER_START)

    # -- prompt ---------------------------------------------------------------------------------
    def layout(self, segments: list[Segment]) -> PromptLayout:
        """Tokenise the system and user turn; each image gets ``grid*grid`` placeholder slots."""
        ids = self._encode(f"<|im_start|>system\n{self.system_prompt}<|im_end|>\n<|im_start|>user\n")
        images: list[tuple[int, ImageSegment]] = []
        for segment, label in labelled_segments(segments):
            if isinstance(segment, TextSegment):
                ids += self._encode(segment.text)
                continue
            image = check_image(segment.image, self.max_image_pixels, label)
            images.append((len(ids), ImageSegment(image, segment.role, segment.evidence, segment.score)))
            ids += [self._slot_id] * self.grid * self.grid
            if segment.role == "query" and segment.evidence is not None:
                line = evidence_sentence(self._evidence(segment.evidence), self.grid, segment.score)
                ids += self._encode("\n" + line.rstrip("\n"))
        return PromptLayout(ids=ids, images=images)

    def _evidence(self, evidence: object) -> torch.Tensor:
        try:
            return evidence_cells(evidence, self.grid)  # type: ignore[arg-type]
        except (ValueError, TypeError) as exc:
            raise InvalidImageError(f"cannot read the image evidence: {exc}") from exc

    def visual_tokens(self, images: list[ImageSegment]) -> torch.Tensor:
        """(images, grid*grid, hidden) projected visual tokens (no autograd)."""
        try:
            cells = self.tower.cells([s.image for s in images], [s.evidence for s in images])
        except ValueError as exc:
            raise InvalidImageError(f"cannot read the image evidence: {exc}") from exc
        with torch.no_grad():
            tokens: torch.Tensor = self.projector(cells.to(self.device))
        return tokens.to(self.dtype)

    def prepare(self, segments: list[Segment]) -> PreparedPrompt:
        """Token embeddings with each image's projected visual tokens in its slots."""
        layout = self.layout(segments)
        tokens = self.visual_tokens([segment for _, segment in layout.images])
        input_ids = torch.tensor([layout.ids], device=self.device)
        count = self.grid * self.grid
        with torch.no_grad():
            embeds = self.embedding_layer()(input_ids).clone()
            for (start, _), visual in zip(layout.images, tokens, strict=True):
                embeds[0, start : start + count] = visual
        spans = []
        for (start, segment), visual in zip(layout.images, tokens, strict=True):
            width, height = segment.image.size
            spans.append(
                VisualSpan(
                    start=start,
                    end=start + count,
                    rows=self.grid,
                    cols=self.grid,
                    boxes=cell_boxes(width, height, self.grid),
                    features=visual,
                    role=segment.role,
                )
            )
        length = len(layout.ids)
        return PreparedPrompt(
            input_ids=input_ids,
            inputs_embeds=embeds,
            position_ids=torch.arange(length, device=self.device).view(1, -1),
            next_position=length,
            spans=spans,
        )
