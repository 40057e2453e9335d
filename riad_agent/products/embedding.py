"""Image and region embeddings from the expert's backbone, for recognising products and typing defects.

A *global* embedding describes a whole image: every tapped layer of the backbone (EfficientNet-Lite0
by default, s4 to s32) is pooled over the image into its per-channel mean and standard deviation,
each of those blocks is L2-normalised (so no layer drowns the others), and the concatenation is
L2-normalised again; the cosine of two embeddings is their dot product. A *region* embedding pools
the same layers inside a box only (at least one cell of each layer's grid), for nearest-exemplar
defect typing. Both see the image resized to a square of ``image_size`` pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from riad_agent.backbones import FeatureBackbone, images_to_batch, load_backbone

#: Rotations (degrees, counter-clockwise) stored for a product whose parts lie at any angle.
FREE_POSE_ROTATIONS: tuple[int, ...] = (0, 90, 180, 270)


def _blocks(values: Sequence[torch.Tensor]) -> np.ndarray:
    """L2-normalise each (B, C) block, concatenate, L2-normalise the rows."""
    parts = [F.normalize(v.float(), dim=1) for v in values]
    return F.normalize(torch.cat(parts, dim=1), dim=1).numpy().astype(np.float32)


def _global(maps: Sequence[torch.Tensor]) -> np.ndarray:
    """(B, D) global embeddings of a batch's feature maps."""
    pooled: list[torch.Tensor] = []
    for feature_map in maps:
        flat = feature_map.float().flatten(2)
        pooled += [flat.mean(dim=2), flat.std(dim=2)]
    return _blocks(pooled)


@dataclass(frozen=True)
class ImageFeatures:
    """The backbone's feature maps of one image (``size``: its width and height in pixels)."""

    maps: list[torch.Tensor]
    size: tuple[int, int]

    def global_vector(self) -> np.ndarray:
        """(D,) global embedding: per-layer channel means and standard deviations, unit length."""
        return _global(self.maps)[0]

    def region_vector(self, box: tuple[int, int, int, int]) -> np.ndarray:
        """(D',) embedding of the pixel box ``(x0, y0, x1, y1)``: per-layer channel means inside it."""
        width, height = self.size
        x0, y0, x1, y1 = box
        pooled: list[torch.Tensor] = []
        for feature_map in self.maps:
            rows, cols = feature_map.shape[-2:]
            c0 = min(x0 * cols // width, cols - 1)
            r0 = min(y0 * rows // height, rows - 1)
            c1 = min(max(c0 + 1, -(-x1 * cols // width)), cols)
            r1 = min(max(r0 + 1, -(-y1 * rows // height)), rows)
            inside = feature_map[0, :, r0:r1, c0:c1].float().flatten(1)
            pooled.append(inside.mean(dim=1, keepdim=True).T)
        return _blocks(pooled)[0]


class ImageEmbedder:
    """Global and region embeddings of RGB images through one frozen backbone."""

    def __init__(self, backbone: FeatureBackbone | str = "efficientnet-lite0", image_size: int = 224) -> None:
        self.backbone = load_backbone(backbone) if isinstance(backbone, str) else backbone
        self.image_size = image_size

    @property
    def embedder_id(self) -> str:
        """Names the backbone and input size: embeddings of different ids are not comparable."""
        return f"{self.backbone.backbone_id}@{self.image_size}"

    def _maps(self, images: Sequence[Image.Image]) -> list[torch.Tensor]:
        return self.backbone(images_to_batch(images, self.image_size))

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, D) global embeddings, unit length."""
        if not images:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return _global(self._maps(images))

    def embed_rotations(
        self, image: Image.Image, rotations: Sequence[int] = FREE_POSE_ROTATIONS
    ) -> np.ndarray:
        """(len(rotations), D) global embeddings of ``image`` turned by each angle."""
        return self.embed([image.rotate(angle, expand=True) for angle in rotations])

    def features(self, image: Image.Image) -> ImageFeatures:
        """One forward pass of ``image``, from which its global and region embeddings are both read."""
        return ImageFeatures(self._maps([image.convert("RGB")]), image.size)

    def embed_region(self, image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
        """(D',) embedding of the pixel box ``(x0, y0, x1, y1)`` of ``image``, unit length."""
        return self.features(image).region_vector(box)

    @property
    def dimension(self) -> int:
        """Width of a global embedding."""
        return 2 * self.region_dimension

    @property
    def region_dimension(self) -> int:
        """Width of a region embedding (the sum of the tapped layers' channels)."""
        cached = getattr(self, "_region_dimension", None)
        if cached is None:
            probe = Image.new("RGB", (64, 64))
            cached = sum(int(m.shape[1]) for m in self._maps([probe]))
            self._region_dimension = cached
        return cached
