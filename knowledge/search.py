"""The read side of the knowledge store: hybrid (dense + BM25), dense and sparse search.

Hybrid search fuses the two rankings with weighted DBSF (computed here, payloads fetched for the
top k only) or with Qdrant's RRF. In embedded mode the sparse search of a hybrid query runs on a
helper thread while the caller computes the query embedding (same hits, less waiting).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from qdrant_client import models

from riad_agent.errors import InvalidRequestError
from riad_agent.knowledge.backend import backend_errors
from riad_agent.knowledge.collection import Catalogue, KnowledgeCollection
from riad_agent.knowledge.embed import start_query_embedding
from riad_agent.knowledge.fusion import dbsf
from riad_agent.knowledge.offload import HelperThread, run_beside
from riad_agent.knowledge.points import DENSE, SPARSE, hit_from_point, qdrant_sparse
from riad_agent.knowledge.sparse import BM25Stats, SparseVector
from riad_agent.schemas import KnowledgeHit

SearchMode = Literal["hybrid", "dense", "sparse"]
FusionMethod = Literal["dbsf", "rrf"]
# runs the sparse half of hybrid searches while the caller computes the query embedding
_SIDE = HelperThread("riad-kb-sparse")


@dataclass
class EncodedQuery:
    """A query turned into vectors (so callers can time or reuse the embedding)."""

    text: str
    dense: np.ndarray | None
    sparse: SparseVector


def _check_query(query: str) -> None:
    if not query or not query.strip():
        raise InvalidRequestError("the knowledge query is empty")


class KnowledgeSearch:
    """Searches a :class:`KnowledgeCollection` through its alias."""

    def __init__(
        self,
        collection: KnowledgeCollection,
        fusion: FusionMethod = "dbsf",
        fusion_weights: tuple[float, float] = (0.4, 0.6),
        rrf_k: int | None = None,
        prefetch: int = 64,
        overlap_embedding: bool = True,
    ) -> None:
        self.collection = collection
        self.fusion = fusion
        self.fusion_weights = fusion_weights
        self.rrf_k = rrf_k
        self.prefetch = prefetch
        self.overlap_embedding = overlap_embedding
        self._filters: dict[str, models.Filter] = {}
        self._filters_of: Catalogue | None = None

    # ------------------------------------------------------------ queries

    def _stats(self) -> BM25Stats:
        meta = self.collection.meta()
        return meta.bm25 if meta else BM25Stats()

    def encode_query(self, query: str, mode: SearchMode = "hybrid") -> EncodedQuery:
        """Dense and sparse vectors of a query (the dense one only when the mode needs it)."""
        _check_query(query)
        stats = self._stats()
        collection = self.collection
        dense = collection.embedder.embed([query])[0] if mode != "sparse" else None
        return EncodedQuery(text=query, dense=dense, sparse=collection.bm25.query_vector(query, stats))

    def encode_queries(self, queries: Sequence[str], mode: SearchMode = "hybrid") -> list[EncodedQuery]:
        """Encode many queries at once (one batched embedding call)."""
        for query in queries:
            _check_query(query)
        stats = self._stats()
        collection = self.collection
        dense = collection.embedder.embed(list(queries)) if mode != "sparse" and queries else None
        return [
            EncodedQuery(
                text=q,
                dense=dense[i] if dense is not None else None,
                sparse=collection.bm25.query_vector(q, stats),
            )
            for i, q in enumerate(queries)
        ]

    # ------------------------------------------------------------ searches

    def search(
        self, query: str, category: str | None = None, k: int = 4, mode: SearchMode = "hybrid"
    ) -> list[KnowledgeHit]:
        """Top-k entries for the query (within ``category`` when given), best first."""
        key = self.collection.resolve_category(category) if category else None
        overlap = self.overlap_embedding and self.collection.local and self.fusion == "dbsf"
        if mode == "hybrid" and overlap and k >= 1:
            return self._search_overlapped(query, key, k)
        return self.search_encoded(self.encode_query(query, mode), category=key, k=k, mode=mode)

    def _search_overlapped(self, query: str, category: str | None, k: int) -> list[KnowledgeHit]:
        """Hybrid DBSF search with the sparse search run beside the query's dense embedding.

        Same hits as ``search_encoded(encode_query(query))``: only the order of the work changes.
        The sparse search (pure Python in embedded Qdrant) goes to a helper thread while the
        MiniLM forward (onnxruntime, no GIL) runs here; the dense search follows both. Embedded
        mode only: a server gets both searches in one batch request after the embedding.
        """
        _check_query(query)
        sparse = self.collection.bm25.query_vector(query, self._stats())
        if not sparse.indices or self.collection.physical() is None:
            return self.search_encoded(self.encode_query(query, "hybrid"), category=category, k=k)
        where = self.category_filter(category)
        limit = max(self.prefetch, k)
        finish = start_query_embedding(self.collection.embedder, query)
        sparse_query = qdrant_sparse(sparse)
        with backend_errors("searching the knowledge base"):
            dense, sparse_ranked = run_beside(
                _SIDE, lambda: self._ranked(sparse_query, SPARSE, where, limit), finish
            )
            dense_ranked = self._ranked(dense.tolist(), DENSE, where, limit)
        return self._fuse_dbsf([dense_ranked, sparse_ranked], k)

    def search_encoded(
        self, encoded: EncodedQuery, category: str | None = None, k: int = 4, mode: SearchMode = "hybrid"
    ) -> list[KnowledgeHit]:
        """Search with an already encoded query."""
        if k < 1:
            raise InvalidRequestError(f"k must be at least 1 (got {k})")
        if mode not in ("hybrid", "dense", "sparse"):
            raise InvalidRequestError(f"unknown search mode {mode!r}; use hybrid, dense or sparse")
        if self.collection.physical() is None:
            return []
        where = self.category_filter(category)
        sparse = qdrant_sparse(encoded.sparse) if encoded.sparse.indices else None
        dense = encoded.dense.tolist() if encoded.dense is not None else None
        client, alias = self.collection.client, self.collection.name
        with backend_errors("searching the knowledge base"):
            if mode == "dense" or (mode == "hybrid" and sparse is None):
                assert dense is not None
                response = client.query_points(
                    alias, query=dense, using=DENSE, query_filter=where, limit=k, with_payload=True
                )
            elif mode == "sparse":
                if sparse is None:
                    return []
                response = client.query_points(
                    alias, query=sparse, using=SPARSE, query_filter=where, limit=k, with_payload=True
                )
            elif self.fusion == "rrf":
                limit = max(self.prefetch, k)
                response = client.query_points(
                    alias,
                    prefetch=[
                        models.Prefetch(query=dense, using=DENSE, filter=where, limit=limit),
                        models.Prefetch(query=sparse, using=SPARSE, filter=where, limit=limit),
                    ],
                    query=self._rrf(),
                    limit=k,
                    with_payload=True,
                )
            else:
                assert sparse is not None
                return self._search_dbsf(dense, sparse, where, k)
        return [hit_from_point(point) for point in response.points]

    def guess_category(self, query: str, k: int = 10) -> tuple[str | None, float]:
        """The most likely category for a query and its share of rank-weighted votes in the top ``k``."""
        hits = self.search(query, category=None, k=k)
        if not hits:
            return None, 0.0
        votes: dict[str, float] = {}
        for rank, hit in enumerate(hits):
            votes[hit.category] = votes.get(hit.category, 0.0) + 1.0 / (rank + 1)
        best = max(votes, key=lambda c: votes[c])
        return best, votes[best] / sum(votes.values())

    # ------------------------------------------------------------ filters and fusion

    def category_filter(self, category: str | None) -> models.Filter | None:
        """The filter of a category (built once per category and catalogue), None without one.

        A server matches the indexed ``category`` payload field. The embedded store evaluates a
        filter in Python point by point, twice per hybrid search, and a payload field condition
        parses its key at every point, which costs more than an id list (``docs/results.md``);
        there the filter lists the category's point ids instead: the same points, taken from the
        catalogue, which is rebuilt whenever the store's content changes (a write through this
        store, or a new generation another process published).
        """
        if not category:
            return None
        key = self.collection.resolve_category(category)
        catalogue = self.collection.catalogue()
        if catalogue is not self._filters_of:
            self._filters, self._filters_of = {}, catalogue
        where = self._filters.get(key)
        if where is None:
            condition: models.Condition
            if self.collection.local:
                condition = models.HasIdCondition(has_id=list(catalogue.members.get(key, [])))
            else:
                condition = models.FieldCondition(key="category", match=models.MatchValue(value=key))
            where = models.Filter(must=[condition])
            self._filters[key] = where
        return where

    def _ranked(
        self, query: Any, using: str, where: models.Filter | None, limit: int
    ) -> list[tuple[str, float]]:
        """``(point id, score)`` of one vector search, best first, without payloads."""
        collection = self.collection
        response = collection.client.query_points(
            collection.name, query=query, using=using, query_filter=where, limit=limit, with_payload=False
        )
        return [(str(p.id), float(p.score)) for p in response.points]

    def _search_dbsf(
        self, dense: list[float] | None, sparse: models.SparseVector, where: models.Filter | None, k: int
    ) -> list[KnowledgeHit]:
        """Both searches, fused here with weighted DBSF; payloads fetched for the top k only.

        A server gets them in one batch request; the embedded store gets two plain calls (its
        batch call deep-copies every request, which costs more than the second call).
        """
        limit = max(self.prefetch, k)
        with backend_errors("searching the knowledge base"):
            if self.collection.local:
                lists = [self._ranked(dense, DENSE, where, limit), self._ranked(sparse, SPARSE, where, limit)]
            else:
                requests = [
                    models.QueryRequest(
                        query=query, using=using, filter=where, limit=limit, with_payload=False
                    )
                    for query, using in ((dense, DENSE), (sparse, SPARSE))
                ]
                responses = self.collection.client.query_batch_points(self.collection.name, requests=requests)
                lists = [[(str(p.id), float(p.score)) for p in r.points] for r in responses]
        return self._fuse_dbsf(lists, k)

    def _fuse_dbsf(self, lists: list[list[tuple[str, float]]], k: int) -> list[KnowledgeHit]:
        """Weighted DBSF of the dense and sparse lists; the top k with their payloads."""
        top = dbsf(lists, self.fusion_weights, fills=[None, 0.0])[:k]
        with backend_errors("searching the knowledge base"):
            records = self.collection.client.retrieve(
                self.collection.name, [key for key, _ in top], with_payload=True
            )
        by_id = {str(r.id): r for r in records}
        return [
            hit_from_point(models.ScoredPoint(id=key, version=0, score=score, payload=by_id[key].payload))
            for key, score in top
            if key in by_id
        ]

    def _rrf(self) -> models.FusionQuery | models.RrfQuery:
        if self.rrf_k is None and self.fusion_weights[0] == self.fusion_weights[1]:
            return models.FusionQuery(fusion=models.Fusion.RRF)
        return models.RrfQuery(rrf=models.Rrf(k=self.rrf_k, weights=list(self.fusion_weights)))
