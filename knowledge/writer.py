"""The write side of the knowledge store: ingest, BM25 re-weighting, rebuild with an alias swap, clear.

Ingest is incremental: everything is validated and embedded before the first write; then changed
entries are upserted, removed ones (same scope) deleted and the BM25 statistics written last.
A crash in between leaves every point a complete old or new version, so the base stays searchable
and the next ingest converges. A new embedder (or a forced rebuild) writes a fresh physical
collection next to the live one and swaps the alias to it at the end.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from qdrant_client import models

from riad_agent.errors import KnowledgeFormatError
from riad_agent.knowledge.backend import backend_errors
from riad_agent.knowledge.collection import FORMAT_VERSION, KnowledgeCollection, StoreMeta
from riad_agent.knowledge.loaders import check_unique
from riad_agent.knowledge.points import (
    DENSE,
    SPARSE,
    entry_from_payload,
    entry_payload,
    point_id,
    qdrant_sparse,
)
from riad_agent.knowledge.schema import KnowledgeEntry
from riad_agent.knowledge.sparse import BM25Stats, avgdl_drifted

ProgressFn = Callable[[int, int], None]
_BATCH = 64


class IngestReport(BaseModel):
    """What an ingest changed."""

    collection: str
    scope: str
    added: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    deleted: list[str] = Field(default_factory=list)
    unchanged: int = 0
    reweighted: int = Field(default=0, description="Unchanged points whose BM25 vectors were refreshed.")
    rebuilt: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.deleted or self.reweighted or self.rebuilt)

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.deleted)} deleted, "
            f"{self.unchanged} unchanged" + (" (rebuilt)" if self.rebuilt else "")
        )


class KnowledgeWriter:
    """Writes entries into a :class:`KnowledgeCollection` (embedding them with its embedder)."""

    def __init__(self, collection: KnowledgeCollection) -> None:
        self.collection = collection

    def ingest(
        self,
        entries: Sequence[KnowledgeEntry],
        scope: str = "default",
        fingerprint: str | None = None,
        rebuild: bool = False,
        progress: ProgressFn | None = None,
    ) -> IngestReport:
        """Make the base hold ``entries`` for ``scope``: add new, update changed, delete the scope's others.

        Nothing is written until every entry is validated and embedded. A new embedder (or
        ``rebuild=True``) builds a fresh collection and swaps the alias to it at the end.
        """
        collection = self.collection
        entries = [KnowledgeEntry.model_validate(e.model_dump()) for e in entries]
        check_unique(entries)
        meta = collection.meta()
        physical = collection.physical()
        existing = collection.points(physical) if physical else {}
        needs_rebuild = (
            rebuild
            or physical is None
            or meta is None
            or meta.format != FORMAT_VERSION
            or meta.embedder != collection.embedder.model_id
        )
        new_ids = {e.id for e in entries}
        report = IngestReport(collection=collection.name, scope=scope, rebuilt=needs_rebuild)
        report.deleted = sorted(
            i for i, p in existing.items() if p.get("scope") == scope and i not in new_ids
        )
        kept = {i: p for i, p in existing.items() if i not in new_ids and i not in report.deleted}
        final_texts = [p["search_text"] for p in kept.values()] + [e.search_text for e in entries]
        stats = collection.bm25.fit(final_texts)
        fingerprints = dict(meta.fingerprints) if meta else {}
        if fingerprint is not None:
            fingerprints[scope] = fingerprint
        scopes = {i: str(p.get("scope", "")) for i, p in kept.items()} | {e.id: scope for e in entries}

        if needs_rebuild:
            every = [entry_from_payload(p) for p in kept.values()] + entries
            for entry in entries:
                (report.updated if entry.id in existing else report.added).append(entry.id)
            vectors = self._embed([e.search_text for e in every], progress)
            self._rebuild(physical, every, vectors, scopes, stats, fingerprints)
            report.unchanged = len(kept)
            return report

        assert physical is not None and meta is not None
        changed = []
        for entry in entries:
            old = existing.get(entry.id)
            if old is None:
                report.added.append(entry.id)
            elif old.get("content_hash") != entry.content_hash or old.get("scope") != scope:
                report.updated.append(entry.id)
            else:
                continue
            changed.append(entry)
        report.unchanged = len(entries) - len(changed) + len(kept)
        reweight = avgdl_drifted(meta.bm25.avgdl, stats.avgdl)
        avgdl = stats.avgdl if reweight else meta.bm25.avgdl
        stats = stats.model_copy(update={"avgdl": avgdl})
        vectors = self._embed([e.search_text for e in changed], progress)

        self._upsert(physical, changed, vectors, scopes, avgdl)
        if reweight:
            report.reweighted = self._reweight(
                physical, existing, {e.id for e in changed}, report.deleted, avgdl
            )
        if report.deleted:
            with backend_errors("deleting knowledge points"):
                collection.client.delete(
                    physical,
                    points_selector=models.PointIdsList(points=[point_id(i) for i in report.deleted]),
                    wait=True,
                )
        if report.changed or meta.bm25 != stats or meta.fingerprints != fingerprints:
            update = {"bm25": stats, "fingerprints": fingerprints}
            collection.write_meta(physical, meta.model_copy(update=update))
        collection.forget_catalogue()
        return report

    def clear(self) -> None:
        """Delete the collection and its alias."""
        collection = self.collection
        physical = collection.physical()
        with backend_errors("deleting the collection"):
            if physical is not None and physical != collection.name:
                collection.client.update_collection_aliases(
                    change_aliases_operations=[
                        models.DeleteAliasOperation(
                            delete_alias=models.DeleteAlias(alias_name=collection.name)
                        )
                    ]
                )
            if physical is not None:
                collection.client.delete_collection(physical)
        collection.remember_meta(None)
        collection.forget_catalogue()

    # ------------------------------------------------------------ the steps

    def _embed(self, texts: Sequence[str], progress: ProgressFn | None) -> np.ndarray:
        embedder = self.collection.embedder
        rows = []
        for start in range(0, len(texts), _BATCH):
            rows.append(embedder.embed(list(texts[start : start + _BATCH])))
            if progress is not None:
                progress(min(start + _BATCH, len(texts)), len(texts))
        if not rows:
            return np.zeros((0, embedder.dimension), dtype=np.float32)
        vectors = np.concatenate(rows, axis=0)
        if not np.all(np.isfinite(vectors)):
            raise KnowledgeFormatError("the embedder returned non-finite vectors; check the embedding model")
        return vectors

    def _create_physical(self, dimension: int) -> str:
        collection = self.collection
        name = f"{collection.name}-{uuid.uuid4().hex[:8]}"
        with backend_errors("creating a collection"):
            collection.client.create_collection(
                name,
                vectors_config={DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)},
                sparse_vectors_config={SPARSE: models.SparseVectorParams()},
            )
            if not collection.local:
                for field in ("category", "dataset", "kind", "scope"):
                    collection.client.create_payload_index(name, field, models.PayloadSchemaType.KEYWORD)
        return name

    def _upsert(
        self,
        physical: str,
        entries: Sequence[KnowledgeEntry],
        vectors: np.ndarray,
        scope_of: dict[str, str],
        avgdl: float,
    ) -> None:
        bm25 = self.collection.bm25
        points = [
            models.PointStruct(
                id=point_id(entry.id),
                vector={
                    DENSE: vector.tolist(),
                    SPARSE: qdrant_sparse(bm25.document_vector(entry.search_text, avgdl)),
                },
                payload=entry_payload(entry, scope_of[entry.id]),
            )
            for entry, vector in zip(entries, vectors, strict=True)
        ]
        with backend_errors("writing knowledge points"):
            for start in range(0, len(points), _BATCH):
                self.collection.client.upsert(physical, points=points[start : start + _BATCH], wait=True)

    def _reweight(
        self,
        physical: str,
        existing: dict[str, dict[str, Any]],
        skip: set[str],
        deleted: list[str],
        avgdl: float,
    ) -> int:
        """Refresh the BM25 vectors of the untouched points for a new average document length."""
        bm25 = self.collection.bm25
        updates = [
            models.PointVectors(
                id=point_id(i),
                vector={SPARSE: qdrant_sparse(bm25.document_vector(p["search_text"], avgdl))},
            )
            for i, p in existing.items()
            if i not in skip and i not in deleted
        ]
        with backend_errors("refreshing BM25 vectors"):
            for start in range(0, len(updates), _BATCH):
                batch = updates[start : start + _BATCH]
                self.collection.client.update_vectors(physical, points=batch, wait=True)
        return len(updates)

    def _rebuild(
        self,
        old: str | None,
        entries: list[KnowledgeEntry],
        vectors: np.ndarray,
        scopes: dict[str, str],
        stats: BM25Stats,
        fingerprints: dict[str, str],
    ) -> None:
        """Write every entry into a fresh physical collection, then point the alias at it."""
        collection = self.collection
        dimension = int(vectors.shape[1]) if len(entries) else int(collection.embedder.dimension)
        physical = self._create_physical(dimension)
        try:
            self._upsert(physical, entries, vectors, scopes, stats.avgdl)
            meta = StoreMeta(
                embedder=collection.embedder.model_id,
                dimension=dimension,
                bm25=stats,
                fingerprints=fingerprints,
            )
            collection.write_meta(physical, meta)
            operations: list[Any] = []
            if old is not None and old != collection.name:
                operations.append(
                    models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=collection.name))
                )
            elif old == collection.name:  # a plain collection holds the name: it has to go first
                with backend_errors("replacing the collection"):
                    collection.client.delete_collection(old)
            operations.append(
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=physical, alias_name=collection.name)
                )
            )
            with backend_errors("switching the collection alias"):
                collection.client.update_collection_aliases(change_aliases_operations=operations)
        except BaseException:
            collection.remember_meta(None)
            with contextlib.suppress(Exception):
                collection.client.delete_collection(physical)
            raise
        if old is not None and old != collection.name:
            with contextlib.suppress(Exception):
                collection.client.delete_collection(old)
        collection.remember_meta(meta)
        collection.forget_catalogue()
