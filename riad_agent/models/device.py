"""Where and in what precision a model runs: ``'auto'`` and explicit device / dtype names, checked."""

from __future__ import annotations

import torch

from riad_agent.errors import ConfigurationError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else is checked."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigurationError("device 'cuda' was asked for but CUDA is not available; use 'cpu' or 'auto'")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigurationError("device 'mps' was asked for but MPS is not available; use 'cpu' or 'auto'")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' -> bf16 on GPUs that support it (else fp16), fp32 on CPU."""
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in _DTYPES:
        raise ConfigurationError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return _DTYPES[dtype]
