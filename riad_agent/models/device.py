"""Where and in what precision a model runs: ``'auto'`` and explicit device / dtype names, checked."""

from __future__ import annotations

import torch

from riad_agent.errors import ConfigurationError
from riad_agent.models.int8 import int8_matmul_available

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
    if dtype == "int8":
        raise ConfigurationError(
            "dtype 'int8' is for the builtin model on a CPU; use auto, float32 or bfloat16"
        )
    if dtype not in _DTYPES:
        raise ConfigurationError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return _DTYPES[dtype]


def builtin_uses_int8(dtype: str, device: torch.device) -> bool:
    """Whether the builtin language model multiplies in int8 (:mod:`riad_agent.models.int8`).

    'int8' asks for it (on a CPU without PyTorch's x86 int8 kernels, or on a GPU: ``ConfigurationError``);
    'auto' chooses it on a CPU that has the kernels but no native bf16 products, where fp32 misses the
    3 s budget of a reasoned inspection (docs/results.md: 4.8 s fp32 against 2.4 s int8 on a 2-core AVX2
    machine; 112 of 120 generated answers as fp32, the same accuracy within a point or two, as bf16's
    117 of 120 where bf16 is native). 'float32' keeps full precision.
    """
    if dtype == "auto":
        return device.type == "cpu" and not cpu_has_native_bfloat16() and int8_matmul_available()
    if dtype != "int8":
        return False
    if device.type != "cpu" or not int8_matmul_available():
        raise ConfigurationError(
            "dtype 'int8' needs a CPU and PyTorch's x86 int8 kernels (fbgemm); use auto or float32"
        )
    return True
