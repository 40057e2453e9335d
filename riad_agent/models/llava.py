"""Adapter for the LLaVA family (transformers' ``LlavaForConditionalGeneration``: LLaVA-1.5 and kin).

Prompt layout (LLaVA-1.5 conversation format, configurable)::

    <s>SYSTEM USER: segments...   | suffix rows (latents, patches, " ASSISTANT:")
    image segment = <image> x image_seq_length   (projected CLIP patch features, row-major grid)

Positions are plain 1-D: token i of the prompt sits at position i, and the suffix continues at
``prompt.length + j``. Pixel boxes account for the processor's resize + centre crop (the patches
only cover the cropped centre of a non-square image).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from PIL import Image

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
from riad_agent.models.hf_batch import BatchedHFDecoderAdapter

LLAVA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


class LlavaAdapter(BatchedHFDecoderAdapter):
    """A :class:`~riad_agent.models.base.VisionLanguageModel` over a LLaVA model."""

    takes_exemplar_images: ClassVar[bool] = True  # defect-exemplar crops go into its prompt as images

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        image_processor: Any,
        model_id: str,
        max_image_pixels: int = 40_000_000,
        system_prompt: str = LLAVA_SYSTEM,
        user_prefix: str = " USER: ",
        assistant_start: str = " ASSISTANT:",
    ) -> None:
        self._bind(model, tokenizer, model_id)
        self.image_processor = image_processor
        self.max_image_pixels = max_image_pixels
        self.system_prompt = system_prompt
        self.user_prefix = user_prefix
        self.assistant_start = assistant_start
        self.image_token_id = int(model.config.image_token_id)
        self.image_seq_length = int(model.config.image_seq_length)
        side = math.isqrt(self.image_seq_length)
        if side * side != self.image_seq_length:
            raise InvalidImageError(f"image_seq_length {self.image_seq_length} is not a square grid")
        self.grid_side = side
        self.eos_token_ids = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()

    # -- tokens ---------------------------------------------------------------------------------
    def answer_start(self) -> torch.Tensor:
        return self.embed_text(self.assistant_start)

    # -- model pieces ---------------------------------------------------------------------------
    def _text_positions(self, positions: torch.Tensor) -> torch.Tensor:
        return positions.view(1, -1)

    # -- prompt ---------------------------------------------------------------------------------
    def _process_image(self, image: Image.Image, label: str) -> torch.Tensor:
        image = check_image(image, self.max_image_pixels, label)
        try:
            out = self.image_processor(images=[image], return_tensors="pt")
        except (ValueError, OSError) as exc:
            raise InvalidImageError(f"{label} cannot be processed for {self.model_id}: {exc}") from exc
        pixel_values: torch.Tensor = out["pixel_values"]
        return pixel_values

    def _visual_features(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        config = self.model.config
        with torch.no_grad():
            out = self.model.model.get_image_features(
                pixel_values.to(self.device, self.dtype),
                vision_feature_layer=config.vision_feature_layer,
                vision_feature_select_strategy=config.vision_feature_select_strategy,
                return_dict=True,
            )
        return [f.to(self.dtype) for f in out.pooler_output]

    def prepare(self, segments: list[Segment]) -> PreparedPrompt:
        """Tokenise system + user turn; each image becomes ``image_seq_length`` projected patch features."""
        ids: list[int] = []
        if self.tokenizer.bos_token_id is not None:
            ids.append(int(self.tokenizer.bos_token_id))
        ids += self._encode(self.system_prompt + self.user_prefix)
        pixels, images, starts = [], [], []
        for segment, label in labelled_segments(segments):
            if isinstance(segment, TextSegment):
                ids += self._encode(segment.text)
                continue
            pixels.append(self._process_image(segment.image, label))
            starts.append(len(ids))
            ids += [self.image_token_id] * self.image_seq_length
            images.append(segment)
        input_ids = torch.tensor([ids], device=self.device)
        pixel_values = torch.cat(pixels)
        features = self._visual_features(pixel_values)
        with torch.no_grad():
            embeds = self.embedding_layer()(input_ids)
            mask = (input_ids == self.image_token_id)[..., None].expand_as(embeds)
            embeds = embeds.masked_scatter(mask, torch.cat(features))
        spans = [
            self._span(start, segment, feats)
            for start, segment, feats in zip(starts, images, features, strict=True)
        ]
        length = input_ids.shape[1]
        return PreparedPrompt(
            input_ids=input_ids,
            inputs_embeds=embeds,
            position_ids=torch.arange(length, device=self.device).view(1, -1),
            next_position=length,
            spans=spans,
            extras={"pixel_values": pixel_values},
        )

    def _crop_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The region of the original image the processed square covers (x0, y0, x1, y1)."""
        processor = self.image_processor
        if getattr(processor, "do_pad", False):
            side = max(width, height)
            return (width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2
        if not getattr(processor, "do_center_crop", False):
            return 0.0, 0.0, float(width), float(height)
        size = getattr(processor, "size", None) or {}
        crop = getattr(processor, "crop_size", None) or {}
        shortest = float(size.get("shortest_edge", min(width, height)))
        scale = shortest / min(width, height)
        crop_w = float(crop.get("width", shortest)) / scale
        crop_h = float(crop.get("height", shortest)) / scale
        x0, y0 = (width - crop_w) / 2, (height - crop_h) / 2
        return x0, y0, x0 + crop_w, y0 + crop_h

    def _span(self, start: int, segment: ImageSegment, features: torch.Tensor) -> VisualSpan:
        width, height = segment.image.size
        x0, y0, x1, y1 = self._crop_box(width, height)
        side = self.grid_side
        boxes = []
        for r in range(side):
            for c in range(side):
                bx0 = min(max(round(x0 + (x1 - x0) * c / side), 0), width - 1)
                by0 = min(max(round(y0 + (y1 - y0) * r / side), 0), height - 1)
                bx1 = min(max(round(x0 + (x1 - x0) * (c + 1) / side), bx0 + 1), width)
                by1 = min(max(round(y0 + (y1 - y0) * (r + 1) / side), by0 + 1), height)
                boxes.append((bx0, by0, bx1, by1))
        return VisualSpan(
            start=start,
            end=start + self.image_seq_length,
            rows=side,
            cols=side,
            boxes=boxes,
            features=features,
            role=segment.role,
        )

    def _prompt_embeds(self, prompt: PreparedPrompt, recompute_vision: bool) -> torch.Tensor:
        if not recompute_vision:
            return prompt.inputs_embeds
        pixel_values = prompt.extras["pixel_values"]
        assert isinstance(pixel_values, torch.Tensor)
        features = torch.cat(self._visual_features(pixel_values))
        with torch.no_grad():
            embeds = self.embedding_layer()(prompt.input_ids)
            mask = (prompt.input_ids == self.image_token_id)[..., None].expand_as(embeds)
            return embeds.masked_scatter(mask, features)
