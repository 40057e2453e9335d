"""Build the expert from settings (the edge: settings are read here, then passed down as values)."""

from __future__ import annotations

from riad_agent.expert.expert import ExpertConfig, PatchCoreExpert
from riad_agent.expert.features import FeatureConfig
from riad_agent.settings import Settings


def open_expert(settings: Settings) -> PatchCoreExpert:
    """The configured expert, its bank cache under ``settings.cache_dir / 'expert'``, bounded
    by ``settings.expert_cache_max_mb``."""
    config = ExpertConfig(
        backbone=settings.expert_backbone,
        features=FeatureConfig(image_size=settings.expert_image_size),
    )
    return PatchCoreExpert(
        config,
        cache_dir=settings.cache_dir / "expert",
        cache_max_bytes=settings.expert_cache_max_mb * 1024 * 1024,
    )
