"""Small generated products and registries on the embedded store, shared by the product tests."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from riad_agent.data.synthetic import generate_sample
from riad_agent.knowledge.local_store import LocalStore
from riad_agent.products import ImageEmbedder, ProductFiles, ProductRegistry

SIZE = 96


def normals(category: str, seeds: range | list[int]) -> list[Image.Image]:
    """Normal generated images of ``category`` (96 px)."""
    return [generate_sample(category, None, seed, SIZE).image for seed in seeds]


def open_registry(root: Path, embedder: ImageEmbedder) -> ProductRegistry:
    """A registry on the embedded store under ``root`` (a new object each time, as another process has)."""
    return ProductRegistry(LocalStore(root / "qdrant"), ProductFiles(root / "products"), embedder)
