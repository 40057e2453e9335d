"""The knowledge base on Qdrant: :class:`QdrantKnowledgeBase`, one object for ingest, search and categories.

It is a facade over three parts, each in its own module:

- :mod:`~riad_agent.knowledge.collection`: the alias, the physical collection behind it, the build
  metadata and the category catalogue, shared by both sides; it reads through a client source
  (:mod:`~riad_agent.knowledge.backend`), for the embedded store the generations of
  :mod:`~riad_agent.knowledge.local_store` that every process on a data dir shares;
- :mod:`~riad_agent.knowledge.writer`: ingest (incremental, crash-safe), BM25 re-weighting and the
  rebuild that swaps the alias;
- :mod:`~riad_agent.knowledge.search`: hybrid (dense + BM25), dense and sparse search.

How an entry becomes a Qdrant point is in :mod:`~riad_agent.knowledge.points`; how a category name
is resolved (and a typo told from a new product) in :mod:`~riad_agent.knowledge.categories`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from qdrant_client import QdrantClient

from riad_agent.knowledge.backend import ClientSource
from riad_agent.knowledge.categories import CategoryInfo
from riad_agent.knowledge.collection import KnowledgeCollection, StoreMeta
from riad_agent.knowledge.loaders import category_pose
from riad_agent.knowledge.schema import KnowledgeEntry
from riad_agent.knowledge.search import EncodedQuery, FusionMethod, KnowledgeSearch, SearchMode
from riad_agent.knowledge.sparse import HashingBM25
from riad_agent.knowledge.writer import IngestReport, KnowledgeWriter, ProgressFn
from riad_agent.protocols import Pose, TextEmbedder
from riad_agent.schemas import KnowledgeHit


class QdrantKnowledgeBase:
    """The :class:`~riad_agent.protocols.KnowledgeBase` on Qdrant, with hybrid (dense + BM25) search.

    ``client`` is a Qdrant client or a client source (``backend.connect``); ``collection`` is the
    alias searches go through. ``storage`` and ``searcher`` are the parts it delegates to, and
    :meth:`writing` gives the writer (see the module docstring).
    """

    def __init__(
        self,
        client: QdrantClient | ClientSource,
        embedder: TextEmbedder,
        collection: str = "riad_knowledge",
        bm25: HashingBM25 | None = None,
        fusion: FusionMethod = "dbsf",
        fusion_weights: tuple[float, float] = (0.4, 0.6),
        rrf_k: int | None = None,
        prefetch: int = 64,
        overlap_embedding: bool = True,
    ) -> None:
        self.storage = KnowledgeCollection(client, collection, embedder, bm25)
        self.searcher = KnowledgeSearch(
            self.storage,
            fusion=fusion,
            fusion_weights=fusion_weights,
            rrf_k=rrf_k,
            prefetch=prefetch,
            overlap_embedding=overlap_embedding,
        )

    @property
    def client(self) -> QdrantClient:
        """The Qdrant client to read from (the server, or the embedded store's latest generation)."""
        return self.storage.client

    @property
    def collection(self) -> str:
        """The alias searches go through."""
        return self.storage.name

    @property
    def local(self) -> bool:
        """True for the embedded store."""
        return self.storage.local

    @property
    def embedder(self) -> TextEmbedder:
        """The text embedder of documents and queries."""
        return self.storage.embedder

    @embedder.setter
    def embedder(self, embedder: TextEmbedder) -> None:
        self.storage.embedder = embedder

    @property
    def fusion(self) -> FusionMethod:
        """How hybrid search fuses the dense and sparse rankings."""
        return self.searcher.fusion

    @fusion.setter
    def fusion(self, fusion: FusionMethod) -> None:
        self.searcher.fusion = fusion

    def close(self) -> None:
        """Release the client (the embedded store holds nothing between writes)."""
        with contextlib.suppress(Exception):
            self.storage.source.close()

    def __enter__(self) -> QdrantKnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ collection

    def physical_collection(self) -> str | None:
        """The collection the alias points at (or the alias name itself if it is a plain collection)."""
        return self.storage.physical()

    def meta(self) -> StoreMeta | None:
        """Build information of the live collection (None when there is none)."""
        return self.storage.meta()

    # ------------------------------------------------------------ writing

    @contextlib.contextmanager
    def writing(self) -> Iterator[KnowledgeWriter]:
        """A writer; on the embedded store it holds the writer lock and publishes when the block ends.

        Another process's write is waited for up to ``knowledge_lock_timeout_s``, then
        :class:`~riad_agent.errors.KnowledgeStoreLockedError`. A block that raises publishes nothing.
        """
        with self.storage.writing() as target:
            yield KnowledgeWriter(target)

    def ingest(
        self,
        entries: Sequence[KnowledgeEntry],
        scope: str = "default",
        fingerprint: str | None = None,
        rebuild: bool = False,
        progress: ProgressFn | None = None,
    ) -> IngestReport:
        """Make the base hold ``entries`` for ``scope`` (see :meth:`KnowledgeWriter.ingest`)."""
        with self.writing() as writer:
            return writer.ingest(
                entries, scope=scope, fingerprint=fingerprint, rebuild=rebuild, progress=progress
            )

    def clear(self) -> None:
        """Delete the collection and its alias."""
        with self.writing() as writer:
            writer.clear()

    # ------------------------------------------------------------ categories

    def list_categories(self) -> list[CategoryInfo]:
        """Every category with its defect types, sorted by canonical name."""
        return list(self.storage.catalogue().infos.values())

    def categories(self) -> list[str]:
        """Every category as 'dataset/category'."""
        return list(self.storage.catalogue().names)

    def resolve_category(self, name: str) -> str:
        """'hazelnut' or 'mvtec/hazelnut' -> 'mvtec/hazelnut'.

        Unknown, ambiguous or empty base: :class:`~riad_agent.errors.UnknownCategoryError`, whose
        ``close_matches`` are non-empty for a likely typo and empty for a name close to nothing.
        """
        return self.storage.resolve_category(name)

    def pose(self, category: str) -> Pose | None:
        """How the category's normal parts lie, from its packaged knowledge file (None: not declared)."""
        return category_pose(category)

    # ------------------------------------------------------------ searching

    def encode_query(self, query: str, mode: SearchMode = "hybrid") -> EncodedQuery:
        """Dense and sparse vectors of a query (the dense one only when the mode needs it)."""
        return self.searcher.encode_query(query, mode)

    def encode_queries(self, queries: Sequence[str], mode: SearchMode = "hybrid") -> list[EncodedQuery]:
        """Encode many queries at once (one batched embedding call)."""
        return self.searcher.encode_queries(queries, mode)

    def search(
        self, query: str, category: str | None = None, k: int = 4, mode: SearchMode = "hybrid"
    ) -> list[KnowledgeHit]:
        """Top-k entries for the query (within ``category`` when given), best first."""
        return self.searcher.search(query, category=category, k=k, mode=mode)

    def search_encoded(
        self, encoded: EncodedQuery, category: str | None = None, k: int = 4, mode: SearchMode = "hybrid"
    ) -> list[KnowledgeHit]:
        """Search with an already encoded query."""
        return self.searcher.search_encoded(encoded, category=category, k=k, mode=mode)

    def guess_category(self, query: str, k: int = 10) -> tuple[str | None, float]:
        """The most likely category for a query and its share of rank-weighted votes in the top ``k``."""
        return self.searcher.guess_category(query, k=k)
