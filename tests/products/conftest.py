"""Fixtures of the product tests: one image embedder per session, a registry on a fresh store per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from products.product_helpers import open_registry

from riad_agent.products import ImageEmbedder, ProductRegistry


@pytest.fixture(scope="session")
def embedder() -> ImageEmbedder:
    return ImageEmbedder()


@pytest.fixture
def registry(tmp_path: Path, embedder: ImageEmbedder) -> Iterator[ProductRegistry]:
    made = open_registry(tmp_path, embedder)
    yield made
    made.source.close()
