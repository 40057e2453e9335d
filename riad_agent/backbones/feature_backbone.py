"""A frozen image network tapped at named layers: what every backbone factory returns."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from riad_agent.errors import ModelLoadError

BackboneFactory = Callable[[], "FeatureBackbone"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Single-image inputs whose feature maps a backbone keeps: one inspection passes its query through
#: the backbone once, whoever asks (recognition, the expert, defect typing).
RECENT_INPUTS = 4


@dataclass
class FeatureBackbone:
    """A frozen module and the named sub-modules whose outputs are the feature maps.

    ``mean``/``std`` normalise an input in [0, 1]; ``strides`` gives each tapped layer's stride.
    The maps of the last :data:`RECENT_INPUTS` one-image batches are kept by content, so parts that
    read the same image at the same size (the product memory and the expert) share one pass.
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
        self._recent: OrderedDict[bytes, list[torch.Tensor]] = OrderedDict()
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
        """Feature maps of a (B, 3, H, W) batch in [0, 1], one per tapped layer, finest first.

        The maps are shared with later calls on the same one-image input: read them, never write them.
        """
        key = _content_key(batch) if batch.shape[0] == 1 else None
        if key is not None:
            with self._lock:
                kept = self._recent.get(key)
                if kept is not None:
                    self._recent.move_to_end(key)
                    return list(kept)
        outputs = self._forward(batch)
        if key is not None:
            with self._lock:
                self._recent[key] = outputs
                while len(self._recent) > RECENT_INPUTS:
                    self._recent.popitem(last=False)
        return list(outputs)

    def _forward(self, batch: torch.Tensor) -> list[torch.Tensor]:
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


def _content_key(batch: torch.Tensor) -> bytes | None:
    """Shape, dtype and a digest of the values (equal keys mean equal inputs); None when the values
    have no plain byte view (e.g. bfloat16), and such inputs are not kept."""
    values = batch.detach().cpu().contiguous()
    try:
        raw = values.numpy().view("uint8")
    except (TypeError, RuntimeError):
        return None
    digest = hashlib.blake2b(raw.data, digest_size=16)
    digest.update(repr((tuple(values.shape), str(values.dtype))).encode())
    return digest.digest()


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
