"""Open the product registry the settings describe (the edge: settings are read here, then passed down)."""

from __future__ import annotations

from riad_agent.knowledge.backend import connect
from riad_agent.products.embedding import ImageEmbedder
from riad_agent.products.files import ProductFiles
from riad_agent.products.registry import DEFAULT_THRESHOLD, ProductRegistry, collection_name
from riad_agent.settings import Settings


def open_registry(settings: Settings, threshold: float = DEFAULT_THRESHOLD) -> ProductRegistry:
    """The registry beside the knowledge base: same Qdrant backend, images under ``<data dir>/products``."""
    return ProductRegistry(
        connect(settings),
        ProductFiles(settings.data_dir / "products"),
        ImageEmbedder(settings.expert_backbone),
        collection=collection_name(settings.collection),
        threshold=threshold,
    )
