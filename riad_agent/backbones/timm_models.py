"""``timm:<model>`` backbones: any timm model with its pretrained weights already in timm's local cache."""

from __future__ import annotations

from riad_agent.backbones.feature_backbone import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneFactory,
    FeatureBackbone,
)
from riad_agent.errors import ModelLoadError


def timm_factory(model_name: str) -> BackboneFactory:
    """A factory for timm's ``model_name`` as a features-only backbone (out indices 1 and 2)."""

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
        mean = tuple(config.get("mean", IMAGENET_MEAN))
        std = tuple(config.get("std", IMAGENET_STD))
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
