"""Tiny randomly initialised VLMs for tests and benchmarks (no downloads, quick to build).

They answer at random; they exist to check shapes, positions, caching and speed ratios offline.

``build_tiny_qwen2_vl(variant)`` returns a ready :class:`~riad_agent.models.base.VisionLanguageModel`
over a small random Qwen2-VL or Qwen2.5-VL, with a byte-level BPE tokenizer trained here on a short
corpus (it carries the Qwen chat and vision special tokens) and a PIL image processor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from riad_agent.models.qwen_vl import Qwen3VLAdapter, QwenVLAdapter

QwenVariant = Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

_CORPUS = [
    "You are a helpful assistant. You inspect industrial products for defects.",
    "Is there any defect in the object? A. Yes. B. No. C. Not sure. D. Scratch. E. Crack.",
    "The normal hazelnut is brown with a smooth shell. A crack is a dark thin line on the surface.",
    "Answer with the option's letter from the given choices directly, then explain briefly.",
    "Reference knowledge: a bottle should have a round rim; contamination shows as spots.",
    "The template images show normal samples. The last image is the query image to inspect.",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,:;!?'\"()-\n",
    # chat-role words, repeated so that BPE keeps them whole as the real Qwen vocabulary does
    *["system\nuser\nassistant\n"] * 20,
]


@dataclass(frozen=True)
class TinySizes:
    """Sizes of a tiny model."""

    hidden: int = 64
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    vision_embed: int = 32
    vision_depth: int = 2
    vision_heads: int = 2
    patch: int = 4
    vocab_extra: int = 300


def build_tiny_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with the Qwen special tokens, trained on a tiny built-in corpus."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None
    )


def build_tiny_qwen2_vl(
    variant: QwenVariant = "qwen2_vl",
    seed: int = 0,
    sizes: TinySizes | None = None,
    max_image_pixels: int = 1_000_000,
    processor_max_pixels: int = 64 * 64,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    max_pixels: int | None = None,
) -> QwenVLAdapter:
    """A random Qwen2-VL (``variant='qwen2_vl'``) or Qwen2.5-VL (``'qwen2_5_vl'``) behind the adapter."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    sizes = sizes or TinySizes()
    tokenizer = build_tiny_tokenizer(256 + sizes.vocab_extra)
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS}
    head_dim = sizes.hidden // sizes.heads
    section = head_dim // 2 // 4
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": sizes.hidden,
        "intermediate_size": sizes.intermediate,
        "num_hidden_layers": sizes.layers,
        "num_attention_heads": sizes.heads,
        "num_key_value_heads": sizes.kv_heads,
        "max_position_embeddings": 4096,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [head_dim // 2 - 2 * section, section, section],
        },
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision: dict[str, object] = {
        "depth": sizes.vision_depth,
        "num_heads": sizes.vision_heads,
        "patch_size": sizes.patch,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "in_channels": 3,
    }
    token_ids: dict[str, Any] = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }
    torch.manual_seed(seed)
    model: Any
    if variant == "qwen2_vl":
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

        vision.update(embed_dim=sizes.vision_embed, hidden_size=sizes.hidden, mlp_ratio=2)
        model = Qwen2VLForConditionalGeneration(
            Qwen2VLConfig(text_config=text, vision_config=vision, **token_ids)
        )
    elif variant == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        vision.update(
            hidden_size=sizes.vision_embed,
            intermediate_size=2 * sizes.vision_embed,
            out_hidden_size=sizes.hidden,
            window_size=sizes.patch * 4,
            fullatt_block_indexes=[sizes.vision_depth - 1],
        )
        model = Qwen2_5_VLForConditionalGeneration(
            Qwen2_5_VLConfig(text_config=text, vision_config=vision, **token_ids)
        )
    elif variant == "qwen3_vl":
        from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

        vision.update(
            hidden_size=sizes.vision_embed,
            intermediate_size=2 * sizes.vision_embed,
            out_hidden_size=sizes.hidden,
            num_position_embeddings=64,
            deepstack_visual_indexes=[0],
        )
        text["head_dim"] = head_dim
        model = Qwen3VLForConditionalGeneration(
            Qwen3VLConfig(text_config=text, vision_config=vision, **token_ids)
        )
    else:
        raise ValueError(f"unknown tiny Qwen variant {variant!r}")
    model = model.to(device=device, dtype=dtype).eval()
    processor: Any = Qwen2VLImageProcessorPil(
        patch_size=sizes.patch,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=(sizes.patch * 2) ** 2,
        max_pixels=processor_max_pixels,
    )
    adapter_class = Qwen3VLAdapter if variant == "qwen3_vl" else QwenVLAdapter
    return adapter_class(
        model,
        tokenizer,
        processor,
        model_id=f"tiny-{variant}",
        max_image_pixels=max_image_pixels,
        max_pixels=max_pixels,
    )


LLAVA_SPECIAL_TOKENS = ["<s>", "</s>", "<unk>", "<image>", "<pad>"]


def build_tiny_llava(
    seed: int = 0,
    sizes: TinySizes | None = None,
    image_size: int = 32,
    max_image_pixels: int = 1_000_000,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
) -> Any:
    """A random LLaVA (CLIP vision tower + Llama text model) behind :class:`LlavaAdapter`."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    from riad_agent.models.llava import LlavaAdapter

    sizes = sizes or TinySizes()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=256 + sizes.vocab_extra,
        special_tokens=LLAVA_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*_CORPUS, *[" USER: ASSISTANT:"] * 20], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    grid = image_size // sizes.patch
    image_token: int = tokenizer.convert_tokens_to_ids("<image>")  # type: ignore[assignment]
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=sizes.hidden,
        intermediate_size=sizes.intermediate,
        num_hidden_layers=sizes.layers,
        num_attention_heads=sizes.heads,
        num_key_value_heads=sizes.kv_heads,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = CLIPVisionConfig(
        hidden_size=sizes.vision_embed,
        intermediate_size=2 * sizes.vision_embed,
        num_hidden_layers=sizes.vision_depth,
        num_attention_heads=sizes.vision_heads,
        image_size=image_size,
        patch_size=sizes.patch,
        projection_dim=sizes.vision_embed,
    )
    torch.manual_seed(seed)
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token,
        image_seq_length=grid * grid,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    model: Any = LlavaForConditionalGeneration(config)
    model = model.to(device=device, dtype=dtype).eval()
    processor: Any = LlavaImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return LlavaAdapter(model, tokenizer, processor, model_id="tiny-llava", max_image_pixels=max_image_pixels)
