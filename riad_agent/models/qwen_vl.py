"""Adapter for Qwen2-VL and Qwen2.5-VL (transformers' ``Qwen2VLForConditionalGeneration`` and
``Qwen2_5_VLForConditionalGeneration``).

Prompt layout (the models' chat format)::

    <|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\n  segments...   | suffix rows
    image segment = <|vision_start|> <|image_pad|> x (rows*cols) <|vision_end|>

Prompt positions come from the model's own ``get_rope_index`` (M-RoPE: images get (t, h, w) grid
positions, text continues after the largest one). Suffix tokens are text: all three axes equal to
``next_position + j``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from riad_agent.errors import InvalidImageError
from riad_agent.models.base import (
    ImageSegment,
    Injection,
    PreparedPrompt,
    Segment,
    TextSegment,
    VisualSpan,
    check_image,
)
from riad_agent.models.hf_batch import BatchedHFDecoderAdapter
from riad_agent.models.hf_decoder import rotate_half

SYSTEM_PROMPT = "You are a helpful assistant."
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
MMAD_MAX_PIXELS = 1280 * 28 * 28
"""The pixel cap of MMAD's Qwen2-VL runs (the checkpoints' own processor allows 12.8 M: 16,384 tokens)."""


class QwenVLAdapter(BatchedHFDecoderAdapter):
    """A :class:`~riad_agent.models.base.VisionLanguageModel` over a Qwen2-VL / Qwen2.5-VL model.

    ``max_pixels`` caps the pixels each image is resized to before its patches are cut (so the
    visual tokens per image: ``max_pixels / (14 * 2)**2`` for the 14 px patches merged 2 x 2);
    None keeps the processor's own cap. ``max_image_pixels`` is the largest input accepted at all.
    """

    takes_exemplar_images: ClassVar[bool] = True  # defect-exemplar crops go into its prompt as images

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        image_processor: Any,
        model_id: str,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        system_prompt: str = SYSTEM_PROMPT,
        max_pixels: int | None = None,
    ) -> None:
        self._bind(model, tokenizer, model_id)
        self.image_processor = image_processor
        self.max_image_pixels = max_image_pixels
        self.max_pixels = max_pixels
        self.system_prompt = system_prompt
        self.merge_size = int(model.config.vision_config.spatial_merge_size)
        self.image_token_id = self._token_id("<|image_pad|>")
        if self.image_token_id != int(model.config.image_token_id):
            raise InvalidImageError(
                f"tokenizer <|image_pad|> id {self.image_token_id} differs from the model's "
                f"image_token_id {model.config.image_token_id}"
            )
        self.vision_start_id = self._token_id("<|vision_start|>")
        self.vision_end_id = self._token_id("<|vision_end|>")
        self.eos_token_ids = {self._token_id("<|im_end|>")}
        for name in ("<|endoftext|>",):
            token = tokenizer.convert_tokens_to_ids(name)
            if isinstance(token, int) and token != tokenizer.unk_token_id:
                self.eos_token_ids.add(token)

    # -- tokens ---------------------------------------------------------------------------------
    def _token_id(self, token: str) -> int:
        value = self.tokenizer.convert_tokens_to_ids(token)
        if not isinstance(value, int) or value < 0 or value == self.tokenizer.unk_token_id:
            raise InvalidImageError(f"the tokenizer lacks the special token {token}")
        return value

    def answer_start(self) -> torch.Tensor:
        return self.embed_text("<|im_end|>\n<|im_start|>assistant\n")

    # -- model pieces ---------------------------------------------------------------------------
    def _text_positions(self, positions: torch.Tensor) -> torch.Tensor:
        return positions.view(1, 1, -1).expand(3, 1, -1)

    # -- prompt ---------------------------------------------------------------------------------
    def _process_image(self, image: Image.Image, label: str) -> tuple[torch.Tensor, torch.Tensor]:
        image = check_image(image, self.max_image_pixels, label)
        try:
            out = self.image_processor(images=[image], return_tensors="pt", **self._size_kwargs())
        except (ValueError, OSError) as exc:
            raise InvalidImageError(f"{label} cannot be processed for {self.model_id}: {exc}") from exc
        return out["pixel_values"], out["image_grid_thw"]

    def _size_kwargs(self) -> dict[str, Any]:
        """The processor's size with the pixel cap applied (nothing when there is no cap)."""
        if self.max_pixels is None:
            return {}
        size = getattr(self.image_processor, "size", None)
        shortest = (
            size.get("shortest_edge") if isinstance(size, dict) else getattr(size, "shortest_edge", None)
        )
        shortest = min(int(shortest or 56 * 56), self.max_pixels)
        return {"size": {"shortest_edge": shortest, "longest_edge": self.max_pixels}}

    def _vision_outputs(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> Any:
        with torch.no_grad():
            return self.model.model.get_image_features(
                pixel_values.to(self.device), grid_thw.to(self.device), return_dict=True
            )

    def _visual_features(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> list[torch.Tensor]:
        """Merged visual features per image (the vectors that sit at its image-token positions)."""
        return [f.to(self.dtype) for f in self._vision_outputs(pixel_values, grid_thw).pooler_output]

    def _extra_visual_features(self, outputs: Any, images: int) -> list[list[torch.Tensor]]:
        """Per image, further per-token visual inputs of the model (none for Qwen2/2.5-VL)."""
        return [[] for _ in range(images)]

    def prepare(self, segments: list[Segment]) -> PreparedPrompt:
        """Tokenise the system turn and the user turn's segments, with visual features in place."""
        if sum(isinstance(s, ImageSegment) and s.role == "query" for s in segments) != 1:
            raise InvalidImageError("a prompt needs exactly one query image")
        ids = self._encode(f"<|im_start|>system\n{self.system_prompt}<|im_end|>\n<|im_start|>user\n")
        pixels, grids, images, starts = [], [], [], []
        image_index = 0
        for segment in segments:
            if isinstance(segment, TextSegment):
                ids += self._encode(segment.text)
                continue
            label = "query image" if segment.role == "query" else f"template image {image_index + 1}"
            image_index += segment.role == "template"
            pixel_values, grid = self._process_image(segment.image, label)
            count = int(grid[0].prod()) // self.merge_size**2
            ids.append(self.vision_start_id)
            starts.append(len(ids))
            ids += [self.image_token_id] * count
            ids.append(self.vision_end_id)
            pixels.append(pixel_values)
            grids.append(grid)
            images.append(segment)
        input_ids = torch.tensor([ids], device=self.device)
        pixel_values = torch.cat(pixels)
        grid_thw = torch.cat(grids).to(self.device)
        outputs = self._vision_outputs(pixel_values, grid_thw)
        features = [f.to(self.dtype) for f in outputs.pooler_output]
        extras = self._extra_visual_features(outputs, len(images))
        with torch.no_grad():
            embeds = self.embedding_layer()(input_ids)
            mask = (input_ids == self.image_token_id)[..., None].expand_as(embeds)
            embeds = embeds.masked_scatter(mask, torch.cat(features))
        position_ids = self._rope_index(input_ids, grid_thw)
        spans = [
            self._span(start, grid, seg, feats, extra)
            for start, grid, seg, feats, extra in zip(starts, grids, images, features, extras, strict=True)
        ]
        return PreparedPrompt(
            input_ids=input_ids,
            inputs_embeds=embeds,
            position_ids=position_ids,
            next_position=int(position_ids.max()) + 1,
            spans=spans,
            extras={"pixel_values": pixel_values, "image_grid_thw": grid_thw},
        )

    def _rope_index(self, input_ids: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        mm_token_type_ids = (input_ids == self.image_token_id).to(torch.int32)
        position_ids: torch.Tensor
        position_ids, _ = self.model.model.get_rope_index(
            input_ids, mm_token_type_ids=mm_token_type_ids, image_grid_thw=grid_thw
        )
        return position_ids

    def _span(
        self,
        start: int,
        grid: torch.Tensor,
        segment: ImageSegment,
        features: torch.Tensor,
        extra: list[torch.Tensor],
    ) -> VisualSpan:
        _, grid_h, grid_w = (int(v) for v in grid[0])
        rows, cols = grid_h // self.merge_size, grid_w // self.merge_size
        width, height = segment.image.size
        ys = np.linspace(0, height, rows + 1).round().astype(int)
        xs = np.linspace(0, width, cols + 1).round().astype(int)
        boxes = [
            (int(xs[c]), int(ys[r]), int(max(xs[c + 1], xs[c] + 1)), int(max(ys[r + 1], ys[r] + 1)))
            for r in range(rows)
            for c in range(cols)
        ]
        return VisualSpan(
            start=start,
            end=start + rows * cols,
            rows=rows,
            cols=cols,
            boxes=boxes,
            features=features,
            role=segment.role,
            extra_features=extra,
        )

    def _prompt_embeds(self, prompt: PreparedPrompt, recompute_vision: bool) -> torch.Tensor:
        if not recompute_vision:
            return prompt.inputs_embeds
        pixel_values = prompt.extras["pixel_values"]
        grid_thw = prompt.extras["image_grid_thw"]
        assert isinstance(pixel_values, torch.Tensor) and isinstance(grid_thw, torch.Tensor)
        features = torch.cat(self._visual_features(pixel_values, grid_thw))
        with torch.no_grad():
            embeds = self.embedding_layer()(prompt.input_ids)
            mask = (prompt.input_ids == self.image_token_id)[..., None].expand_as(embeds)
            return embeds.masked_scatter(mask, features)


class Qwen3VLAdapter(QwenVLAdapter):
    """Qwen3-VL: as Qwen2-VL, plus its *deepstack* visual features.

    Qwen3-VL adds further vision-tower features to the hidden states of the image tokens in its
    first decoder layers. They are kept per merged patch (``VisualSpan.extra_features``, one tensor
    per deepstack layer) and added both at the prompt's image tokens and at every spliced patch, so
    an injected patch is treated exactly like the image token it was copied from.
    """

    def _extra_visual_features(self, outputs: Any, images: int) -> list[list[torch.Tensor]]:
        per_layer = outputs.deepstack_features  # layers x images
        return [[layer[i].to(self.dtype) for layer in per_layer] for i in range(images)]

    def _query_states(self, layer: Any, hidden: torch.Tensor, rotary: Any) -> torch.Tensor:
        attn = layer.self_attn
        batch, tokens, _ = hidden.shape
        query = attn.q_norm(attn.q_proj(hidden).view(batch, tokens, -1, attn.head_dim)).transpose(1, 2)
        cos, sin = rotary
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        return query * cos + rotate_half(query) * sin

    def _visual_kwargs(
        self, prompt: PreparedPrompt, length: int, spliced: list[Injection], with_prompt: bool
    ) -> dict[str, Any]:
        mask = torch.zeros(1, length, dtype=torch.bool, device=self.device)
        layers = len(prompt.query_span.extra_features)
        pieces: list[list[torch.Tensor]] = [[] for _ in range(layers)]
        if with_prompt:
            mask[0, : prompt.length] = prompt.input_ids[0] == self.image_token_id
            for span in prompt.spans:  # spans are in sequence order
                for layer in range(layers):
                    pieces[layer].append(span.extra_features[layer])
        query = prompt.query_span
        for offset, indices in sorted(spliced, key=lambda item: item[0]):
            mask[0, offset : offset + len(indices)] = True
            for layer in range(layers):
                pieces[layer].append(query.extra_features[layer][indices])
        if layers == 0 or not bool(mask.any()):
            return {}
        return {"visual_pos_masks": mask, "deepstack_visual_embeds": [torch.cat(p) for p in pieces]}
