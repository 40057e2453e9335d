"""Steps of an inspection as plain functions, shared by the graph's nodes and triage's fast path.

Each is what a node of ``graphs/nodes.py`` decides, without the state and the progress events: which
stored references a registered product brings, which knowledge category and pose a category
resolves to, and what the product's labelled exemplars say of the strongest region. They call the
same lower-level parts (``products/``, the knowledge base's ``resolve_category`` and ``pose``,
:class:`~riad_agent.evidence.ExemplarTyping`), so a fast-path verdict is the graph's verdict.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from riad_agent.blobs import BlobStore
from riad_agent.errors import UnknownCategoryError, UnknownProductError
from riad_agent.evidence import ExemplarTyping, ExpertFindings
from riad_agent.explain import UNCERTAIN_BAND
from riad_agent.graphs.images import remember_image
from riad_agent.graphs.state import ImageRef
from riad_agent.imaging import ImagePolicy
from riad_agent.products import ProductRegistry
from riad_agent.products.models import Recognition
from riad_agent.protocols import KnowledgeBase, Pose


@dataclass(frozen=True)
class StoredProduct:
    """A registered product's stored references (decoded once) and what it links."""

    name: str
    references: list[ImageRef]
    images: list[Image.Image]
    knowledge: str | None
    pose: Pose | None


@dataclass(frozen=True)
class CategoryResolution:
    """What ``resolve_category`` decides: the canonical category, the pose and what was skipped."""

    category: str | None
    pose: Pose | None
    degraded: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProductChoice:
    """Which registered product an image without references is compared with.

    ``name`` None: none (``unknown`` when no name was given and the image matched no registered
    product); ``similarity``: the recognition's, None when the caller named the product.
    """

    name: str | None
    similarity: float | None = None
    unknown: bool = False


def _spelling(name: str) -> str:
    return name.lower().replace("_", "-")


def choose_product(
    registered: Collection[str], category: str | None, recognise: Callable[[], Recognition]
) -> ProductChoice:
    """The graph's ``recall_product`` rule: a named registered product, else (no name) the recognised one.

    A name that is not registered is a knowledge category or a new product (no choice, not unknown);
    one that differs from a registered name only by ``_`` for ``-`` (``solar_cell`` for a registered
    ``solar-cell``) is that product. ``recognise`` is called only when no name was given and
    something is registered.
    """
    if category is not None:
        if category in registered:
            return ProductChoice(category)
        spelled = {_spelling(name): name for name in registered}
        return ProductChoice(spelled.get(_spelling(category)))
    if not registered:
        return ProductChoice(None, unknown=True)
    recognition = recognise()
    if recognition.product is None:
        return ProductChoice(None, recognition.similarity, unknown=True)
    return ProductChoice(recognition.product, recognition.similarity)


def near_products(registered: Collection[str], category: str | None) -> tuple[str, ...]:
    """Registered names a category that is not registered is a likely typo of (``solar-mon``:
    ``solar-mono``), closest first; empty for a name close to none."""
    if category is None or category in registered:
        return ()
    return tuple(difflib.get_close_matches(category, sorted(registered), n=3, cutoff=0.8))


def stored_product(
    registry: ProductRegistry, name: str, policy: ImagePolicy, blobs: BlobStore
) -> StoredProduct:
    """The product ``name``'s stored references, remembered as the graph's ``recall_product`` does."""
    product = registry.show(name)
    references, images = [], []
    for reference in product.references:
        ref, working = remember_image(registry.files.path(reference.sha256).read_bytes(), policy, blobs)
        references.append(ref)
        images.append(working)
    return StoredProduct(name, references, images, product.knowledge, product.pose)


#: what a registered product's declared pose is credited to in the report ("fixed (registered product)")
PRODUCT_POSE = "registered product"


def resolve_category(
    knowledge: KnowledgeBase | None,
    category: str | None,
    pose: Pose | None,
    *,
    use_knowledge: bool,
    near: Callable[[], Sequence[str]] = tuple,
) -> CategoryResolution:
    """The canonical category and pose, by the rules of the graph's ``resolve_category`` node.

    ``knowledge`` None means it could not be opened (``knowledge_unavailable``). A likely typo of a
    known category raises :class:`UnknownCategoryError`. ``near`` gives the registered products an
    unregistered name without references is a likely typo of (:func:`near_products`); it is called
    only when the knowledge does not know the name either, and then :class:`UnknownProductError`
    says which was meant. A name close to nothing is a new product. ``pose`` is the registered product's, which wins over
    the knowledge entry's.
    """
    if not use_knowledge or category is None:
        return CategoryResolution(category, pose)
    if knowledge is None:
        return CategoryResolution(category, pose, ["knowledge_unavailable"])
    try:
        category = knowledge.resolve_category(category)
    except UnknownCategoryError as exc:
        if exc.close_matches:
            raise
        meant = " or ".join(repr(name) for name in near())
        if meant:
            raise UnknownProductError(
                f"no product or knowledge category named {category!r} and no references were given: "
                f"did you mean the registered product {meant}?"
            ) from None
        return CategoryResolution(category, pose, ["no_knowledge_for_category"])
    if pose is None:
        pose = knowledge.pose(category)
    return CategoryResolution(category, pose)


def exemplar_typing(
    registry: ProductRegistry,
    product: str,
    image: Image.Image,
    findings: ExpertFindings,
    weights: np.ndarray | None = None,
) -> ExemplarTyping | None:
    """The product's labelled exemplars against the strongest region (the ``type_defect`` node's rule):
    None when there is no region, the score is clearly normal or the product has no exemplars.

    ``weights``: the expert's prior map (the image's size), which picks the defect's cells in the box."""
    if not findings.regions or findings.score <= 0.5 - UNCERTAIN_BAND:
        return None
    if not registry.show(product).defects:
        return None
    top = max(findings.regions, key=lambda region: region.score)
    box = (top.x0, top.y0, top.x1, top.y1)
    words = findings.description.regions[0] if findings.description and findings.description.regions else None
    matches = registry.nearest_defects(product, image, box, 3, words, weights)
    return ExemplarTyping.of(
        product,
        [(match.defect_type, match.similarity) for match in matches],
        [match.exemplar for match in matches],
    )
