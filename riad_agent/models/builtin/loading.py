"""The builtin model's trained weights (projector + LoRA deltas, one safetensors file) and its loader."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from riad_agent.errors import ModelLoadError
from riad_agent.models.builtin.adapter import BuiltinAdapter
from riad_agent.models.builtin.language import load_language_model
from riad_agent.models.builtin.lora import merge_lora
from riad_agent.models.builtin.vision import Projector, VisionConfig, VisionTower
from riad_agent.models.device import builtin_uses_int8, resolve_device, resolve_dtype
from riad_agent.models.int8 import quantise_linears

BUILTIN_ID = "riad-builtin-v1"
WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / f"{BUILTIN_ID}.safetensors"


@dataclass
class BuiltinWeights:
    """What training produces: the projector, the LoRA deltas and a JSON record of how."""

    vision: VisionConfig
    projector: dict[str, torch.Tensor]
    lora: dict[str, torch.Tensor]
    record: dict[str, Any]


def save_weights(path: Path, weights: BuiltinWeights) -> Path:
    """One safetensors file: ``projector.*`` and ``lora.*`` tensors, config and record as metadata."""
    from safetensors.torch import save_file

    tensors = {f"projector.{k}": v.detach().float().contiguous() for k, v in weights.projector.items()}
    tensors |= {f"lora.{k}": v.detach().float().contiguous() for k, v in weights.lora.items()}
    metadata = {"vision": weights.vision.model_dump_json(), "record": json.dumps(weights.record)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def read_weights(path: Path) -> BuiltinWeights:
    """Read a weights file (``ModelLoadError`` when missing or not ours)."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise ModelLoadError(
            f"the builtin model's weights are missing at {path}; reinstall riad-agent or retrain them with "
            "python scripts/train_builtin.py"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        vision = VisionConfig.model_validate_json(metadata["vision"])
        record = json.loads(metadata.get("record", "{}"))
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"{path} is not a builtin-model weights file: {exc}") from exc
    projector = {k.removeprefix("projector."): v for k, v in tensors.items() if k.startswith("projector.")}
    lora = {k.removeprefix("lora."): v for k, v in tensors.items() if k.startswith("lora.")}
    return BuiltinWeights(vision=vision, projector=projector, lora=lora, record=record)


def load_builtin(
    weights_path: Path | None = None,
    cache_dir: Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    max_image_pixels: int = 40_000_000,
) -> BuiltinAdapter:
    """The builtin VLM ready for the latent reasoner: SmolLM2 (LoRA merged) + EfficientNet + projector.

    ``dtype`` 'auto' on a CPU with native bf16 products (AVX512-BF16, AMX) runs the language model in
    bf16 (the latent loop takes about half the time, 117 of 120 answers as fp32 on the checks in
    docs/results.md); on another x86 CPU it multiplies in int8 (:mod:`riad_agent.models.int8`: about
    half of fp32's time there, 112 of 120 answers as fp32), on other devices as :func:`resolve_dtype`
    says; 'int8' asks for int8; 'float32' keeps full precision.
    The LoRA deltas are merged in fp32 either way.
    """
    torch_device = resolve_device(device)
    int8 = builtin_uses_int8(dtype, torch_device)
    torch_dtype = torch.float32 if int8 else resolve_dtype(dtype, torch_device, cpu_bfloat16=True)
    weights = read_weights(weights_path or WEIGHTS_PATH)
    model, tokenizer = load_language_model(cache_dir, torch_device, torch.float32)
    try:
        merge_lora(model, weights.lora)
        model = model.to(dtype=torch_dtype)
        if int8:
            quantise_linears(model)
        projector = Projector(weights.vision, int(model.config.hidden_size))
        projector.load_state_dict(weights.projector)
    except (KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"the builtin weights do not fit the language model: {exc}") from exc
    projector = projector.to(torch_device, torch.float32)
    tower = VisionTower(weights.vision)
    return BuiltinAdapter(
        model, tokenizer, tower, projector, model_id=BUILTIN_ID, max_image_pixels=max_image_pixels
    )
