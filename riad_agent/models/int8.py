"""Int8 matrix products for the builtin language model on x86 CPUs without native bf16 (``RIAD_DTYPE``
``auto`` there, or ``int8``).

Each large ``nn.Linear`` of the language model becomes a :class:`DynamicInt8Linear`: the weight is
also stored as int8 with one scale per output channel, and a call with enough rows quantises its
input on the fly and multiplies with PyTorch's x86 int8 kernel (``torch.ops.quantized.linear_dynamic``).
That kernel quantises its whole input with one scale, so each row (token) is first brought to the
same magnitude and scaled back after: in effect one scale per token. On a 2-core AVX2 machine a
(96 x 576) x (576 x 1536) product takes about 0.8 ms instead of 1.2 ms in fp32, and the tied
49k-word LM head, which is memory-bound, a fifth to a sixth of its fp32 time.

Where int8 loses, the layer keeps fp32:
- the MLP's down projection (``skip``): its inputs hold massive activations (one channel about 5,000x
  the median in one layer of SmolLM2-135M), which one scale per token cannot represent;
- calls with fewer rows than ``min_rows`` (one-token decoding steps): the kernel's fixed cost is more
  than the product there; the LM head, memory-bound, is int8 from one row.

The weights stay frozen; gradients with respect to the *input* flow (through the fp32 weight), so the
exact-gradient latent optimiser still runs. ``benchmarks/default_inspection.py`` times the whole
graph with ``RIAD_DTYPE=int8`` against ``float32``; docs/results.md has the answers compared.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

# fbgemm on x86 with AVX2 saturates 8-bit x 8-bit sums unless activations use 7 bits
_REDUCE_RANGE = True
# layers whose inputs hold massive activations (Llama-family naming)
SKIP = ("down_proj",)
# fewest rows for which an int8 call beats fp32 (576-wide layers, 2 AVX2 cores); wide outputs: 1
MIN_ROWS = 32
WIDE_OUTPUT = 8192


def int8_matmul_available() -> bool:
    """Whether this PyTorch build has the x86 int8 dynamic linear kernels (fbgemm or x86 engine)."""
    quantized = getattr(torch.ops, "quantized", None)
    engines = getattr(torch.backends.quantized, "supported_engines", [])
    return (
        quantized is not None
        and hasattr(quantized, "linear_dynamic")
        and hasattr(quantized, "linear_prepack")
        and any(engine in engines for engine in ("x86", "fbgemm"))
    )


class _Int8LinearFunction(torch.autograd.Function):
    """The int8 product forward; backward to the input through the layer's fp32 weight."""

    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor, packed: Any, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weight)
        out: torch.Tensor = torch.ops.quantized.linear_dynamic(inputs, packed, _REDUCE_RANGE)
        return out

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (weight,) = ctx.saved_tensors
        return grad_output @ weight, None, None


class DynamicInt8Linear(nn.Module):
    """A frozen ``nn.Linear`` that multiplies in int8 (per-channel weight, per-token input) when it pays."""

    def __init__(self, linear: nn.Linear, min_rows: int | None = None) -> None:
        super().__init__()
        # the fp32 layer stays: calls with few rows and the backward pass use it (the LM head's weight
        # is the embedding table's, shared, so only the other layers hold a second, int8 copy)
        self.full = linear.float().cpu()
        self.in_features = int(linear.in_features)
        self.out_features = int(linear.out_features)
        self.min_rows = (
            min_rows if min_rows is not None else (1 if self.out_features >= WIDE_OUTPUT else MIN_ROWS)
        )
        weight = linear.weight.detach().float().cpu()
        scales = (weight.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()
        with warnings.catch_warnings():  # PyTorch marks quantised tensor creation as deprecated
            warnings.simplefilter("ignore")
            quantised = torch.quantize_per_channel(
                weight, scales, torch.zeros(self.out_features, dtype=torch.long), 0, torch.qint8
            )
            self._packed = torch.ops.quantized.linear_prepack(quantised, None)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        flat = inputs.reshape(-1, self.in_features).float()
        if flat.shape[0] < self.min_rows:
            return self.full(inputs.float()).to(inputs.dtype)
        row_scale = flat.detach().abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
        scaled = flat / row_scale
        if scaled.requires_grad:
            out = _Int8LinearFunction.apply(scaled, self._packed, self.full.weight)
        else:
            out = torch.ops.quantized.linear_dynamic(scaled, self._packed, _REDUCE_RANGE)
        out = out * row_scale
        if self.full.bias is not None:
            out = out + self.full.bias
        return out.reshape(*inputs.shape[:-1], self.out_features).to(inputs.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 from {self.min_rows} rows"


def quantise_linears(module: nn.Module, skip: tuple[str, ...] = SKIP) -> int:
    """Replace each ``nn.Linear`` inside ``module`` whose name is not in ``skip`` by a
    :class:`DynamicInt8Linear`; returns how many were replaced."""
    replaced = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            if name not in skip:
                setattr(module, name, DynamicInt8Linear(child))
                replaced += 1
        else:
            replaced += quantise_linears(child, skip)
    return replaced
