"""Test fixture helpers: tiny random VLMs (re-exported from :mod:`riad_agent.models.tiny`) and images.

Test areas import these as ``from support.tiny_models import build_tiny_qwen2_vl``
(``tests/conftest.py`` puts ``tests/`` on the path).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from riad_agent.models.tiny import (
    SPECIAL_TOKENS,
    TinySizes,
    build_tiny_llava,
    build_tiny_qwen2_vl,
    build_tiny_tokenizer,
)

__all__ = [
    "SPECIAL_TOKENS",
    "TinySizes",
    "build_tiny_llava",
    "build_tiny_qwen2_vl",
    "build_tiny_tokenizer",
    "noise_image",
]


def noise_image(width: int = 64, height: int = 64, seed: int = 0) -> Image.Image:
    """A deterministic RGB noise image."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
