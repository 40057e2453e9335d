"""Load a VLM adapter from a hub id or a local path (``from_pretrained``), device and dtype given.

The weights are read straight onto the device in the dtype asked for (``device_map`` and ``dtype``
at ``from_pretrained``): no full-precision copy on the CPU first, no move afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from riad_agent.errors import ModelLoadError
from riad_agent.models.base import VisionLanguageModel
from riad_agent.models.device import resolve_device, resolve_dtype

SUPPORTED = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava")

DEFAULT_MAX_PIXELS = 1280 * 28 * 28
"""Pixel cap of a Qwen-VL image before its patches are cut (MMAD's; ``RIAD_VLM_MAX_PIXELS``)."""

BUILTIN = "builtin"


def open_vlm(
    name: str,
    device: str = "auto",
    dtype: str = "auto",
    max_image_pixels: int = 40_000_000,
    cache_dir: Path | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> VisionLanguageModel:
    """'builtin' (the offline compact model, language model cached under ``cache_dir``) or any
    checkpoint :func:`load_vlm` reads (``max_pixels``: Qwen-VL's cap per image)."""
    if name == BUILTIN:
        from riad_agent.models.builtin.loading import load_builtin

        return load_builtin(
            cache_dir=cache_dir, device=device, dtype=dtype, max_image_pixels=max_image_pixels
        )
    return load_vlm(
        name, device=device, dtype=dtype, max_image_pixels=max_image_pixels, max_pixels=max_pixels
    )


def load_vlm(
    name_or_path: str | Path,
    device: str = "auto",
    dtype: str = "auto",
    max_image_pixels: int = 40_000_000,
    local_files_only: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> VisionLanguageModel:
    """A ready adapter for a Qwen2-VL, Qwen2.5-VL, Qwen3-VL or LLaVA checkpoint (raises ``ModelLoadError``).

    ``max_pixels`` caps each Qwen-VL image (None: the checkpoint processor's own cap)."""
    from transformers import AutoConfig, AutoTokenizer

    source = str(name_or_path)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=local_files_only)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read a model config from {source!r}: {exc}") from exc
    model_type = str(getattr(config, "model_type", ""))
    if model_type not in SUPPORTED:
        raise ModelLoadError(
            f"{source!r} is a {model_type or 'unknown'} model; supported: {', '.join(SUPPORTED)}"
        )
    try:
        model_class, processor_class = _classes(model_type)
        model: Any = model_class.from_pretrained(
            source, dtype=torch_dtype, device_map=torch_device, local_files_only=local_files_only
        )
        model = model.eval()
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
        processor = processor_class.from_pretrained(source, local_files_only=local_files_only)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot load {source!r}: {exc}") from exc
    if model_type == "llava":
        from riad_agent.models.llava import LlavaAdapter

        return LlavaAdapter(model, tokenizer, processor, model_id=source, max_image_pixels=max_image_pixels)
    from riad_agent.models.qwen_vl import Qwen3VLAdapter, QwenVLAdapter

    adapter_class = Qwen3VLAdapter if model_type == "qwen3_vl" else QwenVLAdapter
    return adapter_class(
        model, tokenizer, processor, model_id=source, max_image_pixels=max_image_pixels, max_pixels=max_pixels
    )


def _classes(model_type: str) -> tuple[Any, Any]:
    if model_type == "qwen2_vl":
        from transformers import Qwen2VLForConditionalGeneration
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        return Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil
    if model_type == "qwen2_5_vl":
        from transformers import Qwen2_5_VLForConditionalGeneration
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        return Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil
    if model_type == "qwen3_vl":
        from transformers import Qwen3VLForConditionalGeneration
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        return Qwen3VLForConditionalGeneration, Qwen2VLImageProcessorPil
    from transformers import LlavaForConditionalGeneration
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    return LlavaForConditionalGeneration, LlavaImageProcessorPil
