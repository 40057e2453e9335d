"""Product memory: registered products with their normal references and labelled defect exemplars,
kept in Qdrant beside the knowledge base, recognised from an image by a global embedding.

``registry.py`` (the store and its operations), ``embedding.py`` (global and region embeddings from
the expert's backbone), ``files.py`` (the images, by content), ``regions.py`` (a defect's box),
``models.py`` (what crosses the boundary), ``factory.py`` (:func:`open_registry` from settings).
"""

from riad_agent.products.embedding import ImageEmbedder
from riad_agent.products.factory import open_registry
from riad_agent.products.files import ProductFiles
from riad_agent.products.models import DefectExemplar, DefectMatch, Product, ProductReference, Recognition
from riad_agent.products.registry import DEFAULT_THRESHOLD, ProductRegistry

__all__ = [
    "DEFAULT_THRESHOLD",
    "DefectExemplar",
    "DefectMatch",
    "ImageEmbedder",
    "Product",
    "ProductFiles",
    "ProductReference",
    "ProductRegistry",
    "Recognition",
    "open_registry",
]
