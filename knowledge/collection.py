"""The live knowledge collection: the alias, the physical collection behind it, its build metadata
and its category catalogue, shared by the write side and the search side of the store.

Searches go through an alias (``Settings.collection``) that points at a physical collection, so a
rebuild is written next to the live one and swapped in at the end. The metadata (embedder, BM25
statistics, source fingerprints) is kept in the physical collection's own metadata.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, KeysView
from typing import Any

from pydantic import BaseModel, Field
from qdrant_client import QdrantClient

from riad_agent.knowledge.backend import ClientSource, FixedClient, backend_errors
from riad_agent.knowledge.categories import CategoryInfo, resolve_category
from riad_agent.knowledge.points import point_id
from riad_agent.knowledge.sparse import BM25Stats, HashingBM25
from riad_agent.protocols import TextEmbedder

FORMAT_VERSION = 1
META_KEY = "riad_knowledge"


class StoreMeta(BaseModel):
    """What the collection remembers about how it was built (kept in the collection metadata)."""

    format: int = FORMAT_VERSION
    embedder: str
    dimension: int
    bm25: BM25Stats
    fingerprints: dict[str, str] = Field(default_factory=dict)


class Catalogue:
    """Every category of the collection with its defect types and point ids (a snapshot)."""

    def __init__(self, points: dict[str, dict[str, Any]]) -> None:
        infos: dict[str, CategoryInfo] = {}
        members: dict[str, list[str]] = {}
        for entry_id, payload in points.items():
            key = payload["category"]
            members.setdefault(key, []).append(point_id(entry_id))
            info = infos.setdefault(
                key, CategoryInfo(category=key, dataset=payload["dataset"], name=payload["name"])
            )
            if payload["kind"] == "normal":
                info.has_normal = True
            elif payload.get("defect_type"):
                info.defect_types.append(payload["defect_type"])
        for info in infos.values():
            info.defect_types.sort()
        self.infos = dict(sorted(infos.items()))
        self.members = {key: sorted(ids) for key, ids in members.items()}

    @property
    def names(self) -> KeysView[str]:
        """The canonical category names, sorted."""
        return self.infos.keys()


class KnowledgeCollection:
    """The alias ``name`` read through ``client``, with metadata and catalogue cached per content.

    ``client`` is a Qdrant client (used as it is) or a :class:`~riad_agent.knowledge.backend.ClientSource`
    such as the embedded store shared by processes, whose read copy may change between calls: the
    caches are kept per content token, so another process's write is seen at the next call.
    """

    def __init__(
        self,
        client: QdrantClient | ClientSource,
        name: str,
        embedder: TextEmbedder,
        bm25: HashingBM25 | None = None,
    ) -> None:
        self.source: ClientSource = FixedClient(client) if isinstance(client, QdrantClient) else client
        self.name = name
        self.embedder = embedder
        self.bm25 = bm25 or HashingBM25()
        self.local = self.source.local
        self._meta: tuple[str, StoreMeta | None] | None = None
        self._catalogue: tuple[str, Catalogue] | None = None

    @property
    def client(self) -> QdrantClient:
        """The client to read from now (the embedded store's latest generation)."""
        return self.source.current()[0]

    @contextlib.contextmanager
    def writing(self) -> Iterator[KnowledgeCollection]:
        """The collection to write to: this one on a fixed client, else a private copy published at the end."""
        with self.source.transaction() as client:
            if isinstance(self.source, FixedClient):
                yield self
            else:
                yield KnowledgeCollection(client, self.name, self.embedder, self.bm25)

    def physical(self) -> str | None:
        """The collection the alias points at (or the alias name itself if it is a plain collection)."""
        return self._physical(self.client)

    def _physical(self, client: QdrantClient) -> str | None:
        with backend_errors("reading collection aliases"):
            for alias in client.get_aliases().aliases:
                if alias.alias_name == self.name:
                    return alias.collection_name
            if client.collection_exists(self.name):
                return self.name
        return None

    def meta(self) -> StoreMeta | None:
        """Build information of the live collection (None when there is none)."""
        client, token = self.source.current()
        cached = self._meta
        if cached is not None and cached[0] == token and cached[1] is not None:
            return cached[1]
        physical = self._physical(client)
        if physical is None:
            return None
        with backend_errors("reading the collection"):
            info = client.get_collection(physical)
        blob = (info.config.metadata or {}).get(META_KEY)
        meta = StoreMeta.model_validate(json.loads(blob)) if isinstance(blob, str) else None
        self._meta = (token, meta)
        return meta

    def write_meta(self, physical: str, meta: StoreMeta) -> None:
        """Store ``meta`` in the physical collection's metadata (and cache it)."""
        client, token = self.source.current()
        with backend_errors("writing the collection metadata"):
            client.update_collection(physical, metadata={META_KEY: meta.model_dump_json()})
        self._meta = (token, meta)

    def remember_meta(self, meta: StoreMeta | None) -> None:
        """Cache ``meta`` as the live collection's (None: read it again when next needed)."""
        self._meta = None if meta is None else (self.source.current()[1], meta)

    def points(self, physical: str, client: QdrantClient | None = None) -> dict[str, dict[str, Any]]:
        """Payload of every point, keyed by entry id (read through ``client``, default: the current one)."""
        client = client or self.client
        out: dict[str, dict[str, Any]] = {}
        offset: Any = None
        with backend_errors("reading the knowledge points"):
            while True:
                points, offset = client.scroll(
                    physical, limit=256, offset=offset, with_payload=True, with_vectors=False
                )
                for point in points:
                    payload = point.payload or {}
                    out[str(payload.get("entry_id"))] = payload
                if offset is None:
                    break
        return out

    def catalogue(self) -> Catalogue:
        """The categories of the live collection (read again after a write or a new generation)."""
        client, token = self.source.current()
        cached = self._catalogue
        if cached is not None and cached[0] == token:
            return cached[1]
        physical = self._physical(client)
        catalogue = Catalogue(self.points(physical, client) if physical else {})
        self._catalogue = (token, catalogue)
        return catalogue

    def forget_catalogue(self) -> None:
        """Drop the cached catalogue (after a write)."""
        self._catalogue = None

    def resolve_category(self, name: str) -> str:
        """The canonical name of one of this collection's categories (policy: ``categories.py``)."""
        return resolve_category(name, self.catalogue().names)
