"""Where and in what precision a model runs: ``'auto'`` and explicit device / dtype names, checked."""

from __future__ import annotations

import torch

from riad_agent.errors import ConfigurationError

# Linux CPU flags that give native bf16 matrix products (oneDNN uses them); elsewhere bf16 is emulated
_NATIVE_BF16_CHECKS = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")

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


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX): about 2x fp32 there."""
    checks = [getattr(torch.cpu, name, None) for name in _NATIVE_BF16_CHECKS]
    return any(bool(check()) for check in checks if callable(check))


def resolve_dtype(dtype: str, device: torch.device, cpu_bfloat16: bool = False) -> torch.dtype:
    """'auto' -> bf16 on GPUs that support it (else fp16); on CPU fp32, or bf16 when ``cpu_bfloat16``
    and the CPU has native bf16 products (a model that was checked in bf16 asks for it)."""
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_bfloat16 and cpu_has_native_bfloat16():
            return torch.bfloat16
        return torch.float32
    if dtype not in _DTYPES:
        raise ConfigurationError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return _DTYPES[dtype]
