"""The product registry: products, their normal references and labelled defects, kept in Qdrant.

One collection (``<knowledge collection>_products``) next to the knowledge base, on the same
backend (the embedded store shared by processes, or the server at ``QDRANT_URL``), holds three kinds
of points, told apart by ``payload.kind``:

- ``product``: the product's record (name, linked knowledge category, pose), without a vector;
- ``reference``: one normal reference image, with its global embedding (vector ``image``); a product
  whose pose is not ``fixed`` gets one point per quarter turn, so a turned part is still recognised;
- ``defect``: a labelled exemplar, with its region's signature: the defect's cells (one multivector
  per layer, ``cells_0`` and ``cells_1``) and its words (vector ``words``); typing compares them in
  :func:`~riad_agent.products.embedding.signature_similarity`.

Images live in :class:`~riad_agent.products.files.ProductFiles`, by content. The embedder's id is
kept in the collection's metadata: vectors of another backbone are refused, not mixed. Writes go
through :meth:`ProductRegistry.writing` (the embedded store's writer lock and a published version);
embeddings are computed before the lock is taken.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from PIL import Image
from qdrant_client import QdrantClient, models

from riad_agent.errors import (
    ConfigurationError,
    InvalidRequestError,
    ProductExistsError,
    ProductsChangedError,
    UnknownProductError,
)
from riad_agent.knowledge.backend import ClientSource, FixedClient, backend_errors
from riad_agent.products.embedding import (
    FREE_POSE_ROTATIONS,
    MASK_SHARE,
    ImageEmbedder,
    ImageFeatures,
    RegionSignature,
    describe_box,
    signature_similarity,
    words_vector,
)
from riad_agent.products.files import PreparedImage, ProductFiles
from riad_agent.products.models import (
    DefectExemplar,
    DefectMatch,
    Pose,
    Product,
    ProductReference,
    Recognition,
    RegionSource,
    defect_type_name,
    product_name,
)
from riad_agent.products.regions import mask_box, strongest_box
from riad_agent.protocols import AnomalyMap, Expert
from riad_agent.schemas import DescribedRegion

IMAGE = "image"
WORDS = "words"
META_KEY = "riad_products"
#: Cosine similarity at or above which the nearest product is accepted (benchmarks/recognition.py).
DEFAULT_THRESHOLD = 0.93
_NAMESPACE = uuid.UUID("5d7b8f0e-5a57-4f5e-9c53-0e0b7f3c2a11")
_SCROLL = 512
_NEIGHBOURS = 64
_SIGNATURE_CACHE = 8  # products whose exemplar signatures a registry keeps


def _cells_vector(layer: int) -> str:
    """The named multivector of a defect's cells in the ``layer``-th of ``CELL_LAYERS``."""
    return f"cells_{layer}"


def collection_name(knowledge_collection: str) -> str:
    """The products collection beside a knowledge collection."""
    return f"{knowledge_collection}_products"


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _id(*parts: object) -> str:
    return str(uuid.uuid5(_NAMESPACE, "|".join(str(p) for p in parts)))


def _match(**fields: str) -> models.Filter:
    return models.Filter(
        must=[models.FieldCondition(key=k, match=models.MatchValue(value=v)) for k, v in fields.items()]
    )


class ProductRegistry:
    """Register products, extend them, label defects, recognise products in images (see the module doc)."""

    def __init__(
        self,
        source: ClientSource | QdrantClient,
        files: ProductFiles,
        embedder: ImageEmbedder,
        collection: str = collection_name("riad_knowledge"),
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        self.source: ClientSource = FixedClient(source) if isinstance(source, QdrantClient) else source
        self.files = files
        self.embedder = embedder
        self.collection = collection
        self.threshold = threshold
        # exemplar signatures read from a store version that says when it changed (the embedded
        # store's generation): a stream of inspections of one product reads them once
        self._signatures: OrderedDict[tuple[str, str], builtins.list[tuple[str, str, RegionSignature]]] = (
            OrderedDict()
        )
        self._signatures_lock = threading.Lock()

    # ------------------------------------------------------------ storage

    @contextlib.contextmanager
    def writing(self, check_embedder: bool = True) -> Iterator[QdrantClient]:
        """A client to write the collection to (created when missing); published when the block succeeds.

        ``check_embedder=False`` lets :meth:`remove` clear products stored by another embedder.
        """
        with self.source.transaction() as client:
            self._ensure_collection(client, check_embedder)
            yield client

    def _ensure_collection(self, client: QdrantClient, check_embedder: bool = True) -> None:
        with backend_errors("creating the products collection"):
            if client.collection_exists(self.collection):
                if check_embedder:
                    self._check_embedder(client)
                return
            client.create_collection(
                self.collection,
                vectors_config={
                    IMAGE: models.VectorParams(size=self.embedder.dimension, distance=models.Distance.COSINE),
                    WORDS: models.VectorParams(size=len(words_vector(None)), distance=models.Distance.DOT),
                    **{
                        _cells_vector(layer): models.VectorParams(
                            size=size,
                            distance=models.Distance.DOT,
                            multivector_config=models.MultiVectorConfig(
                                comparator=models.MultiVectorComparator.MAX_SIM
                            ),
                        )
                        for layer, size in enumerate(self.embedder.cell_dimensions)
                    },
                },
                metadata={META_KEY: json.dumps({"embedder": self.embedder.embedder_id})},
            )
            if not self.source.local:
                for field in ("kind", "product", "defect_type"):
                    client.create_payload_index(self.collection, field, models.PayloadSchemaType.KEYWORD)

    def _check_embedder(self, client: QdrantClient) -> None:
        blob = (client.get_collection(self.collection).config.metadata or {}).get(META_KEY)
        stored = json.loads(blob).get("embedder") if isinstance(blob, str) else None
        if stored != self.embedder.embedder_id:
            again = (
                "re-embed them from their stored images (`riad product reembed`, nothing is lost), or remove "
                "every product (riad product remove NAME, or the forget_product tool) and add them again"
            )
            same_backbone = str(stored).split("@")[0] == self.embedder.embedder_id.split("@")[0]
            if same_backbone:  # an earlier version's input side or signatures, the same backbone
                raise ConfigurationError(
                    f"the products in {self.collection} were stored by an earlier riad-agent ({stored}); this "
                    f"one embeds them as {self.embedder.embedder_id}: {again}"
                )
            raise ConfigurationError(
                f"the products in {self.collection} were embedded with {stored}, not "
                f"{self.embedder.embedder_id}; set the backbone they used (RIAD_EXPERT_BACKBONE), or {again}"
            )

    def _reader(self) -> QdrantClient | None:
        client = self.source.current()[0]
        with backend_errors("reading the products collection"):
            if not client.collection_exists(self.collection):
                return None
        self._check_embedder(client)
        return client

    def _payloads(
        self, client: QdrantClient, query: models.Filter | None = None
    ) -> builtins.list[tuple[str, dict[str, Any]]]:
        out: builtins.list[tuple[str, dict[str, Any]]] = []
        offset: Any = None
        with backend_errors("reading the products"):
            while True:
                points, offset = client.scroll(
                    self.collection, scroll_filter=query, limit=_SCROLL, offset=offset, with_payload=True
                )
                out += [(str(p.id), p.payload or {}) for p in points]
                if offset is None:
                    return out

    @staticmethod
    def _assemble(rows: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Product]:
        records: dict[str, dict[str, Any]] = {}
        references: dict[str, dict[str, ProductReference]] = {}
        defects: dict[str, builtins.list[DefectExemplar]] = {}
        for point_id, payload in rows:
            name = str(payload.get("product"))
            kind = payload.get("kind")
            if kind == "product":
                records[name] = payload
            elif kind == "reference":
                reference = ProductReference.model_validate(
                    {k: payload[k] for k in ("sha256", "width", "height", "added_at")}
                )
                references.setdefault(name, {})[reference.sha256] = reference
            elif kind == "defect":
                fields = {k: payload[k] for k in DefectExemplar.model_fields if k != "id"}
                defects.setdefault(name, []).append(DefectExemplar.model_validate({**fields, "id": point_id}))
        return {
            name: Product(
                name=name,
                knowledge=record.get("knowledge"),
                pose=record.get("pose"),
                embedder=record["embedder"],
                created_at=record["created_at"],
                references=sorted(references.get(name, {}).values(), key=lambda r: (r.added_at, r.sha256)),
                defects=sorted(defects.get(name, []), key=lambda d: (d.defect_type, d.added_at, d.id)),
            )
            for name, record in sorted(records.items())
        }

    def _unknown(self, name: str, client: QdrantClient | None) -> UnknownProductError:
        known = sorted(self._assemble(self._payloads(client))) if client is not None else []
        listed = ", ".join(known) if known else "none yet (riad product add NAME --good DIR)"
        return UnknownProductError(f"no product named {name!r}; registered: {listed}")

    def _get(self, client: QdrantClient | None, name: str) -> Product:
        if client is not None:
            found = self._assemble(self._payloads(client, _match(product=name)))
            if name in found:
                return found[name]
        raise self._unknown(name, client)

    # ------------------------------------------------------------ reading

    def list(self) -> builtins.list[Product]:
        """Every registered product, by name."""
        client = self._reader()
        return [] if client is None else list(self._assemble(self._payloads(client)).values())

    def show(self, name: str) -> Product:
        """The product ``name``, or :class:`UnknownProductError` listing the registered ones."""
        return self._get(self._reader(), product_name(name))

    def reference_images(self, name: str) -> builtins.list[Image.Image]:
        """The stored normal references of ``name`` (what the expert compares against)."""
        return self._references(self.show(name))

    def exemplar_crop(self, name: str, exemplar_id: str, margin: float = 0.25) -> Image.Image:
        """The region of a stored defect exemplar cut from its image, ``margin`` of its size around it.

        :class:`UnknownProductError` for an unknown product, :class:`InvalidRequestError` for an id it
        does not have.
        """
        product = self.show(name)
        for exemplar in product.defects:
            if exemplar.id == exemplar_id:
                x0, y0, x1, y1 = exemplar.box
                pad_x, pad_y = round((x1 - x0) * margin), round((y1 - y0) * margin)
                image = self.files.open(exemplar.sha256)
                return image.crop(
                    (
                        max(0, x0 - pad_x),
                        max(0, y0 - pad_y),
                        min(image.width, x1 + pad_x),
                        min(image.height, y1 + pad_y),
                    )
                )
        raise InvalidRequestError(f"product {product.name!r} has no defect exemplar {exemplar_id!r}")

    # ------------------------------------------------------------ writing

    def _reference_points(
        self, name: str, images: Sequence[Image.Image], pose: Pose | None
    ) -> tuple[builtins.list[PreparedImage], builtins.list[models.PointStruct]]:
        """Prepared copies and points of new references (embedded here, before any lock)."""
        if not images:
            raise InvalidRequestError(f"give at least one normal reference image of {name!r}")
        copies, points = [], []
        added = _now()
        for image in images:
            prepared = self.files.prepare(image)
            copies.append(prepared)
            points += self._reference_vectors(name, prepared.key, prepared.image, pose, added)
        return copies, points

    def _reference_vectors(
        self, name: str, key: str, stored: Image.Image, pose: Pose | None, added: str
    ) -> builtins.list[models.PointStruct]:
        """The points of one stored reference: one per quarter turn unless the pose is fixed."""
        rotations = (0,) if pose == "fixed" else FREE_POSE_ROTATIONS
        vectors = self.embedder.embed_rotations(stored, rotations)
        payload = {
            "kind": "reference",
            "product": name,
            "sha256": key,
            "width": stored.width,
            "height": stored.height,
            "added_at": added,
        }
        return [
            models.PointStruct(
                id=_id("reference", name, key, angle),
                vector={IMAGE: vector.tolist()},
                payload={**payload, "rotation": angle},
            )
            for angle, vector in zip(rotations, vectors, strict=True)
        ]

    def _upsert(self, client: QdrantClient, points: builtins.list[models.PointStruct]) -> None:
        with backend_errors("writing the products"):
            for start in range(0, len(points), 256):
                client.upsert(self.collection, points=points[start : start + 256], wait=True)

    def add(
        self,
        name: str,
        images: Sequence[Image.Image],
        *,
        knowledge: str | None = None,
        pose: Pose | None = None,
    ) -> Product:
        """Register a new product with its normal references; :class:`ProductExistsError` if it is known."""
        name = product_name(name)
        if pose not in (None, "free", "fixed"):
            raise InvalidRequestError(f"pose must be 'free' or 'fixed' (got {pose!r})")
        copies, points = self._reference_points(name, images, pose)
        record = models.PointStruct(
            id=_id("product", name),
            vector={},
            payload={
                "kind": "product",
                "product": name,
                "knowledge": knowledge,
                "pose": pose,
                "embedder": self.embedder.embedder_id,
                "created_at": _now(),
            },
        )
        with self.writing() as client:
            if self._assemble(self._payloads(client, _match(product=name, kind="product"))):
                raise ProductExistsError(
                    f"product {name!r} is already registered; extend it with more references (`riad product "
                    f"add {name} --good DIR` again, or ProductRegistry.extend), or remove it first"
                )
            for copy in copies:
                self.files.put(copy)
            self._upsert(client, [record, *points])
            return self._get(client, name)

    def extend(self, name: str, images: Sequence[Image.Image]) -> Product:
        """Add normal references to a registered product (an image it already has is kept once)."""
        name = product_name(name)
        product = self.show(name)
        copies, points = self._reference_points(name, images, product.pose)
        with self.writing() as client:
            current = self._get(client, name)  # removed meanwhile: UnknownProductError
            known = {r.sha256 for r in current.references}
            for copy in copies:
                self.files.put(copy)
            self._upsert(client, [p for p in points if (p.payload or {}).get("sha256") not in known])
            return self._get(client, name)

    def add_defect(
        self,
        name: str,
        defect_type: str,
        image: Image.Image,
        *,
        mask: np.ndarray | None = None,
        expert: Expert | None = None,
    ) -> DefectExemplar:
        """Store a labelled defect of ``name``: the image, its region and the region's embedding.

        The region is the bounding box of ``mask`` (a boolean array of the image's size), or without a
        mask the expert's strongest region against the product's references.
        """
        name = product_name(name)
        defect_type = defect_type_name(defect_type)
        product = self.show(name)
        image = image.convert("RGB")
        prepared = self.files.prepare(image)
        stored = prepared.image
        mask_key = None
        if mask is not None:
            box, scaled = mask_box(mask, image.size, stored.size)
            source: RegionSource = "mask"
            signature = self._mask_signature(stored, box, scaled)
        else:
            if expert is None:
                raise InvalidRequestError("give a mask of the defect, or an expert to find its region")
            anomaly = expert.analyse(stored, self._references(product), pose=product.pose)
            box = strongest_box(anomaly)
            source, scaled = "expert", None
            signature = self._expert_signature(stored, box, anomaly)
        with self.writing() as client:
            self._get(client, name)
            key = self.files.put(prepared)
            if scaled is not None:
                mask_key = self.files.put_mask(scaled)
            exemplar_id = _id("defect", name, key, *box)
            exemplar = DefectExemplar(
                id=exemplar_id,
                defect_type=defect_type,
                sha256=key,
                width=stored.width,
                height=stored.height,
                box=box,
                region_source=source,
                mask_sha256=mask_key,
                added_at=_now(),
            )
            payload = {"kind": "defect", "product": name, **exemplar.model_dump(mode="json", exclude={"id"})}
            self._upsert(
                client,
                [models.PointStruct(id=exemplar_id, vector=_signature_vectors(signature), payload=payload)],
            )
        return exemplar

    def _references(self, product: Product) -> builtins.list[Image.Image]:
        return [self.files.open(r.sha256) for r in product.references]

    def _mask_signature(
        self, image: Image.Image, box: tuple[int, int, int, int], mask: np.ndarray
    ) -> RegionSignature:
        """A labelled region given by its mask: the mask's cells and the box's words."""
        words = describe_box(image, mask, box, refine=False)
        return self.embedder.features(image).region_signature(box, words, mask, MASK_SHARE)

    def _expert_signature(
        self, image: Image.Image, box: tuple[int, int, int, int], anomaly: AnomalyMap
    ) -> RegionSignature:
        """A labelled region the expert found: the cells its prior map marks in the box, and its words."""
        words = describe_box(image, anomaly.pixel_scores, box, refine=True)
        return self.embedder.features(image).region_signature(box, words, anomaly.prior_map())

    def _expected_vector_sizes(self) -> dict[str, int]:
        return {
            IMAGE: self.embedder.dimension,
            WORDS: len(words_vector(None)),
            **{_cells_vector(layer): size for layer, size in enumerate(self.embedder.cell_dimensions)},
        }

    def _vector_sizes(self, client: QdrantClient) -> dict[str, int]:
        with backend_errors("reading the products collection"):
            vectors = client.get_collection(self.collection).config.params.vectors
        return (
            {name: int(params.size) for name, params in (vectors or {}).items()}
            if isinstance(vectors, dict)
            else {}
        )

    def stored_products(self) -> builtins.list[Product]:
        """Every product as stored, whichever embedder stored it (:meth:`list` refuses another's)."""
        client = self.source.current()[0]
        with backend_errors("reading the products collection"):
            if not client.collection_exists(self.collection):
                return []
        return list(self._assemble(self._payloads(client)).values())

    def reembed(
        self, expert: Expert | None = None, *, open_expert: Callable[[], Expert] | None = None
    ) -> dict[str, int]:
        """Embed every stored product again with this registry's embedder, from the stored images.

        For products stored by an earlier riad-agent or another backbone (which :meth:`list` refuses
        with :class:`ConfigurationError`): ids, boxes, masks and dates stay; the vectors and the
        collection's embedder are replaced. An exemplar whose region came from the expert needs
        ``expert`` (its map against the product's references, read inside the stored box), or
        ``open_expert`` to build one only when such an exemplar exists. Everything
        is computed before the write; the embedded store publishes it as one new version. With vectors
        of the same sizes the points are overwritten by id and the embedder's id written last, so a
        failure midway loses nothing; only another backbone's vectors make the collection anew (on a
        server not atomically). Returns the counts of products, references and defect exemplars.
        """
        products = {p.name: p for p in self.stored_products()}
        if not products:
            return {"products": 0, "references": 0, "defects": 0}

        def needs_expert(exemplar: DefectExemplar) -> bool:
            return exemplar.region_source != "mask" or exemplar.mask_sha256 is None

        if expert is None and any(needs_expert(d) for p in products.values() for d in p.defects):
            if open_expert is None:
                raise InvalidRequestError(
                    "re-embedding exemplars whose region the expert found needs the expert"
                )
            expert = open_expert()
        points: builtins.list[models.PointStruct] = []
        counts = {"products": len(products), "references": 0, "defects": 0}
        for product in products.values():
            record = {
                "kind": "product",
                "product": product.name,
                "knowledge": product.knowledge,
                "pose": product.pose,
                "embedder": self.embedder.embedder_id,
                "created_at": product.created_at,
            }
            points.append(models.PointStruct(id=_id("product", product.name), vector={}, payload=record))
            references = self._references(product)
            for reference, image in zip(product.references, references, strict=True):  # keys kept as stored
                points += self._reference_vectors(
                    product.name, reference.sha256, image, product.pose, reference.added_at
                )
            counts["references"] += len(references)
            for exemplar in product.defects:
                image = self.files.open(exemplar.sha256)
                if not needs_expert(exemplar):
                    assert exemplar.mask_sha256 is not None
                    signature = self._mask_signature(
                        image, exemplar.box, self.files.open_mask(exemplar.mask_sha256)
                    )
                else:
                    assert expert is not None  # checked above
                    anomaly = expert.analyse(image, references, pose=product.pose)
                    signature = self._expert_signature(image, exemplar.box, anomaly)
                payload = {
                    "kind": "defect",
                    "product": product.name,
                    **exemplar.model_dump(mode="json", exclude={"id"}),
                }
                points.append(
                    models.PointStruct(id=exemplar.id, vector=_signature_vectors(signature), payload=payload)
                )
                counts["defects"] += 1
        with self.writing(check_embedder=False) as client:
            if self._assemble(self._payloads(client)) != products:
                raise ProductsChangedError(
                    "the products changed while they were re-embedded (another process wrote them); "
                    "run `riad product reembed` again"
                )
            if self._vector_sizes(client) == self._expected_vector_sizes():
                # the same shapes (an earlier input side or signature): overwrite by id, the
                # embedder's id last, so a write that fails midway loses nothing and is run again
                self._upsert(client, points)
                with backend_errors("re-embedding the products"):
                    client.update_collection(
                        self.collection,
                        metadata={META_KEY: json.dumps({"embedder": self.embedder.embedder_id})},
                    )
            else:  # another backbone: other vector sizes, so the collection is made anew
                with backend_errors("re-embedding the products"):
                    client.delete_collection(self.collection)
                self._ensure_collection(client)
                self._upsert(client, points)
        with self._signatures_lock:
            self._signatures.clear()
        return counts

    def remove(self, name: str, defect_type: str | None = None) -> int:
        """Remove a product (or only its exemplars of ``defect_type``); how many points went.

        Images no point refers to any more are deleted from the products folder.
        """
        name = product_name(name)
        kind = None if defect_type is None else defect_type_name(defect_type)
        with self.writing(check_embedder=False) as client:
            product = self._get(client, name)
            if kind is not None and kind not in product.defect_counts():
                types = ", ".join(product.defect_counts()) or "none"
                raise InvalidRequestError(
                    f"product {name!r} has no {kind!r} exemplars; its defect types: {types}"
                )
            query = (
                _match(product=name)
                if kind is None
                else _match(product=name, kind="defect", defect_type=kind)
            )
            ids = [point_id for point_id, _ in self._payloads(client, query)]
            with backend_errors("removing products"):
                client.delete(
                    self.collection, points_selector=models.PointIdsList(points=list(ids)), wait=True
                )
            keep: set[str] = set()
            left = self._payloads(client)
            for _, payload in left:
                keep.update(payload[k] for k in ("sha256", "mask_sha256") if payload.get(k))
            self.files.keep_only(keep)
            if not left:  # nothing registered: the next product makes the collection for the current embedder
                with backend_errors("removing products"):
                    client.delete_collection(self.collection)
        return len(ids)

    # ------------------------------------------------------------ recognition and typing

    def _features(self, image: Image.Image | ImageFeatures) -> ImageFeatures:
        return image if isinstance(image, ImageFeatures) else self.embedder.features(image)

    def recognise(self, image: Image.Image | ImageFeatures) -> Recognition:
        """The registered product nearest to ``image`` by global embedding, accepted at ``threshold``.

        ``image`` may be the embedder's :class:`ImageFeatures` of it, shared with :meth:`nearest_defects`.
        """
        client = self._reader()
        if client is None:
            return Recognition(product=None, nearest=None, similarity=0.0, threshold=self.threshold)
        vector = self._features(image).global_vector()
        with backend_errors("searching the products"):
            hits = client.query_points(
                self.collection,
                query=vector.tolist(),
                using=IMAGE,
                query_filter=_match(kind="reference"),
                limit=_NEIGHBOURS,
                with_payload=["product"],
            ).points
        best: dict[str, float] = {}
        for hit in hits:
            owner = str((hit.payload or {}).get("product"))
            best[owner] = max(best.get(owner, -1.0), float(hit.score))
        ranked = sorted(best.items(), key=lambda item: -item[1])
        if not ranked:
            return Recognition(product=None, nearest=None, similarity=0.0, threshold=self.threshold)
        nearest, similarity = ranked[0]
        second = ranked[1] if len(ranked) > 1 else (None, None)
        return Recognition(
            product=nearest if similarity >= self.threshold else None,
            nearest=nearest,
            similarity=round(similarity, 4),
            threshold=self.threshold,
            runner_up=second[0],
            runner_up_similarity=None if second[1] is None else round(second[1], 4),
        )

    def nearest_defects(
        self,
        name: str,
        image: Image.Image | ImageFeatures,
        box: tuple[int, int, int, int],
        k: int = 3,
        words: DescribedRegion | None = None,
        weights: np.ndarray | None = None,
    ) -> builtins.list[DefectMatch]:
        """The defect types of ``name`` whose exemplars are nearest to the region ``box`` of ``image``.

        ``words``: the region described (the expert's findings have it); without, only its look counts.
        ``weights``: the anomaly map (image-sized) that says which cells of the box are the defect;
        without, every cell of the box. Every exemplar of the product is compared
        (:func:`~riad_agent.products.embedding.signature_similarity`); a type's similarity is its
        best exemplar's.
        """
        name = product_name(name)
        client = self._reader()
        if client is None:
            raise self._unknown(name, None)
        query = self._features(image).region_signature(box, words, weights)
        best: dict[str, DefectMatch] = {}
        for point_id, defect_type, signature in self._cached_signatures(client, name):
            similarity = round(signature_similarity(query, signature), 4)
            if defect_type not in best or similarity > best[defect_type].similarity:
                best[defect_type] = DefectMatch(
                    defect_type=defect_type, similarity=similarity, exemplar=point_id
                )
        return sorted(best.values(), key=lambda m: -m.similarity)[:k]

    def _cached_signatures(
        self, client: QdrantClient, name: str
    ) -> builtins.list[tuple[str, str, RegionSignature]]:
        """:meth:`_exemplar_signatures`, kept while the store's version token stays the same (a server
        gives no token: read every time)."""
        token = self.source.current()[1]
        if not token:
            return builtins.list(self._exemplar_signatures(client, name))
        key = (token, name)
        with self._signatures_lock:
            kept = self._signatures.get(key)
        if kept is None:
            kept = builtins.list(self._exemplar_signatures(client, name))
            with self._signatures_lock:
                self._signatures[key] = kept
                while len(self._signatures) > _SIGNATURE_CACHE:
                    self._signatures.popitem(last=False)
        return kept

    def _exemplar_signatures(
        self, client: QdrantClient, name: str
    ) -> Iterator[tuple[str, str, RegionSignature]]:
        """(exemplar id, defect type, signature) of every labelled exemplar of ``name``."""
        layers = [_cells_vector(layer) for layer in range(len(self.embedder.cell_dimensions))]
        offset: Any = None
        with backend_errors("reading the defect exemplars"):
            while True:
                points, offset = client.scroll(
                    self.collection,
                    scroll_filter=_match(kind="defect", product=name),
                    limit=_SCROLL,
                    offset=offset,
                    with_payload=["defect_type"],
                    with_vectors=[WORDS, *layers],
                )
                for point in points:
                    vectors = point.vector if isinstance(point.vector, dict) else {}
                    cells = [np.asarray(vectors.get(layer) or [], dtype=np.float32) for layer in layers]
                    signature = RegionSignature(
                        cells=[
                            c.reshape(-1, size)
                            for c, size in zip(cells, self.embedder.cell_dimensions, strict=True)
                        ],
                        words=np.asarray(vectors.get(WORDS), dtype=np.float32),
                    )
                    yield str(point.id), str((point.payload or {}).get("defect_type")), signature
                if offset is None:
                    return


def _signature_vectors(signature: RegionSignature) -> dict[str, Any]:
    """A signature as the exemplar point's named vectors (a layer with no cell is left out)."""
    vectors: dict[str, Any] = {WORDS: signature.words.tolist()}
    for layer, cells in enumerate(signature.cells):
        if len(cells):
            vectors[_cells_vector(layer)] = cells.tolist()
    return vectors
