"""Low-rank adapters (LoRA) on chosen linear layers of a frozen language model, and their merge.

Training wraps each chosen ``nn.Linear`` in :class:`LoRALinear` (``W x + scale * B A x``; ``B`` starts
at zero, so training starts from the unchanged model). For inference the deltas are added into the
weights once (:func:`merge_lora`), so the adapted model is a plain transformers model again and every
adapter code path (KV caches, packed suffixes) stays the same.
"""

from __future__ import annotations

import torch
from torch import nn

DEFAULT_TARGETS = ("q_proj", "v_proj")


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, seed: int) -> None:
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        generator = torch.Generator().manual_seed(seed)
        self.lora_a = nn.Parameter(
            torch.randn(rank, base.in_features, generator=generator) / base.in_features**0.5
        )
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * ((x @ self.lora_a.T) @ self.lora_b.T)


def _targets(model: nn.Module, targets: tuple[str, ...]) -> list[tuple[str, nn.Module, str]]:
    found = []
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            if child_name in targets and isinstance(child, nn.Linear):
                found.append((f"{name}.{child_name}" if name else child_name, module, child_name))
    return found


def add_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16.0,
    targets: tuple[str, ...] = DEFAULT_TARGETS,
    seed: int = 0,
) -> dict[str, LoRALinear]:
    """Wrap every linear layer named in ``targets``; returns them by qualified name."""
    wrapped = {}
    for index, (qualified, parent, child_name) in enumerate(_targets(model, targets)):
        layer = LoRALinear(getattr(parent, child_name), rank, alpha, seed + index)
        setattr(parent, child_name, layer)
        wrapped[qualified] = layer
    return wrapped


def lora_state(wrapped: dict[str, LoRALinear]) -> dict[str, torch.Tensor]:
    """The trainable tensors, keyed ``<layer>.lora_a`` / ``<layer>.lora_b``, plus each layer's scale."""
    state: dict[str, torch.Tensor] = {}
    for name, layer in wrapped.items():
        state[f"{name}.lora_a"] = layer.lora_a.detach().clone()
        state[f"{name}.lora_b"] = layer.lora_b.detach().clone()
        state[f"{name}.lora_scale"] = torch.tensor(layer.scale)
    return state


@torch.no_grad()
def merge_lora(model: nn.Module, state: dict[str, torch.Tensor]) -> int:
    """Add saved LoRA deltas into the plain linear layers of ``model``; returns how many were merged.

    Raises ``KeyError`` when a saved layer does not exist in the model (weights of another model).
    """
    modules = dict(model.named_modules())
    names = sorted({key.rsplit(".", 1)[0] for key in state})
    for name in names:
        layer = modules[name]
        if not isinstance(layer, nn.Linear):
            raise KeyError(f"{name} is not a linear layer")
        delta = float(state[f"{name}.lora_scale"]) * (state[f"{name}.lora_b"] @ state[f"{name}.lora_a"])
        layer.weight += delta.to(device=layer.weight.device, dtype=layer.weight.dtype)
    return len(names)
