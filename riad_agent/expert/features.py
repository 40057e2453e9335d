"""Locally aware patch features, PatchCore-style: pool each layer over a neighbourhood, align, concat.

Each tapped layer is average-pooled over a ``neighbourhood x neighbourhood`` window (stride 1), so a
patch feature describes its surroundings; deeper (coarser) layers are upsampled to the finest tapped
grid, each layer is divided by the square root of its width (so wide layers do not drown thin ones),
and the layers are concatenated. A seeded Gaussian random projection optionally shrinks the width.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from riad_agent.backbones import FeatureBackbone, images_to_batch


class FeatureConfig(BaseModel):
    """How images become patch features; part of the bank cache key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(default=256, ge=64, le=1024, description="Square network input side (pixels).")
    grid_stride: int | None = Field(
        default=8, ge=1, le=64, description="Stride of the output patch grid; None = the finest layer's."
    )
    neighbourhood: int = Field(default=3, ge=1, le=9, description="Local average-pooling window.")
    projection_dim: int | None = Field(default=None, ge=8, description="Random projection width; None = off.")
    position_weight: float = Field(
        default=60.0, ge=0.0, description="Weight of the (x, y) grid position appended to each feature."
    )
    normalise_intensity: bool = Field(
        default=False,
        description="Per-image contrast normalisation (mean/std) before the network; for EL/texture images.",
    )
    seed: int = Field(default=0, ge=0)

    def key(self) -> str:
        """A short stable hash of the configuration."""
        blob = json.dumps(self.model_dump(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class PatchFeatureExtractor:
    """Turns images into a (B, rows, cols, dim) grid of locally aggregated patch features."""

    def __init__(self, backbone: FeatureBackbone, config: FeatureConfig) -> None:
        self.backbone = backbone
        self.config = config
        self._projection: torch.Tensor | None = None

    @property
    def stride(self) -> int:
        return self.config.grid_stride or min(self.backbone.strides)

    def grid(self) -> tuple[int, int]:
        side = -(-self.config.image_size // self.stride)
        return side, side

    def _project(self, features: torch.Tensor) -> torch.Tensor:
        dim = self.config.projection_dim
        if dim is None or dim >= features.shape[-1]:
            return features
        if self._projection is None or self._projection.shape[0] != features.shape[-1]:
            generator = torch.Generator().manual_seed(self.config.seed)
            self._projection = torch.randn(features.shape[-1], dim, generator=generator) / dim**0.5
        return features @ self._projection

    def _with_position(self, features: torch.Tensor) -> torch.Tensor:
        weight = self.config.position_weight
        if weight <= 0:
            return features
        _, rows, cols, _ = features.shape
        ys = torch.linspace(0, 1, rows).view(1, rows, 1, 1).expand(features.shape[0], rows, cols, 1)
        xs = torch.linspace(0, 1, cols).view(1, 1, cols, 1).expand(features.shape[0], rows, cols, 1)
        return torch.cat([features, weight * ys, weight * xs], dim=-1)

    @torch.inference_mode()
    def __call__(self, images: Sequence[Image.Image], batch_size: int = 8) -> torch.Tensor:
        outputs = []
        for start in range(0, len(images), batch_size):
            batch = images_to_batch(
                images[start : start + batch_size], self.config.image_size, self.config.normalise_intensity
            )
            outputs.append(self.from_batch(batch))
        return torch.cat(outputs)

    @torch.inference_mode()
    def from_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """Patch features of a prepared (B, 3, S, S) batch in [0, 1]."""
        maps = self.backbone(batch)
        target = (-(-batch.shape[-2] // self.stride), -(-batch.shape[-1] // self.stride))
        pad = self.config.neighbourhood // 2
        parts = []
        for feature_map in maps:
            pooled = F.avg_pool2d(
                feature_map.float(),
                self.config.neighbourhood,
                stride=1,
                padding=pad,
                count_include_pad=False,
            )
            if pooled.shape[-2] > target[0]:
                pooled = F.adaptive_avg_pool2d(pooled, target)
            elif tuple(pooled.shape[-2:]) != target:
                pooled = F.interpolate(pooled, size=target, mode="bilinear", align_corners=False)
            parts.append(pooled / pooled.shape[1] ** 0.5)
        features = torch.cat(parts, dim=1).permute(0, 2, 3, 1).contiguous()
        return self._with_position(self._project(features))
