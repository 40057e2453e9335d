"""A frozen image network tapped at named layers: what every backbone factory returns."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from riad_agent.errors import ModelLoadError

BackboneFactory = Callable[[], "FeatureBackbone"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class FeatureBackbone:
    """A frozen module and the named sub-modules whose outputs are the feature maps.

    ``mean``/``std`` normalise an input in [0, 1]; ``strides`` gives each tapped layer's stride.
    """

    backbone_id: str
    module: nn.Module
    layers: tuple[str, ...]
    strides: tuple[int, ...]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    returns_features: bool = False

    def __post_init__(self) -> None:
        if len(self.layers) != len(self.strides) or not self.layers:
            raise ModelLoadError(f"backbone {self.backbone_id}: give one stride per tapped layer")
        self.module.eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self._outputs: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()
        if self.returns_features:
            return
        names = dict(self.module.named_modules())
        missing = [name for name in self.layers if name not in names]
        if missing:
            raise ModelLoadError(
                f"backbone {self.backbone_id} has no layer(s) {', '.join(missing)}; "
                f"some available: {', '.join(list(names)[1:12])} ..."
            )
        for name in self.layers:
            names[name].register_forward_hook(self._hook(name))

    def _hook(self, name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def store(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            self._outputs[name] = output
            if len(self._outputs) == len(self.layers):
                raise _EnoughFeatures

        return store

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of a (B, 3, H, W) batch in [0, 1], one per tapped layer, finest first."""
        mean = torch.tensor(self.mean, dtype=batch.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=batch.dtype).view(1, 3, 1, 1)
        if self.returns_features:
            return list(self.module((batch - mean) / std))
        with self._lock:
            self._outputs = {}
            with contextlib.suppress(_EnoughFeatures):
                self.module((batch - mean) / std)
            outputs = [self._outputs[name] for name in self.layers]
            self._outputs = {}
        return outputs


class _EnoughFeatures(Exception):
    """Raised by the last hook to skip the rest of the network."""


def torch_module_backbone(
    backbone_id: str,
    module: nn.Module,
    layers: Sequence[str],
    strides: Sequence[int],
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> FeatureBackbone:
    """Wrap any local torch module (e.g. a torchvision ResNet with weights on disk) as a backbone."""
    return FeatureBackbone(backbone_id, module, tuple(layers), tuple(strides), mean, std)
