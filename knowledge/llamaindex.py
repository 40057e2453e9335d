"""llama-index access to the knowledge base: a retriever and a ``QdrantVectorStore`` on the collection.

``KnowledgeRetriever`` runs the store's own hybrid search and returns ``NodeWithScore`` objects
(node id = entry id, metadata = dataset, category, kind, defect type, title). ``vector_store`` gives
llama-index's ``QdrantVectorStore`` reading the collection directly (dense search only; our payload
is read through its plain ``text`` key).
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from riad_agent.knowledge.points import DENSE, SPARSE
from riad_agent.knowledge.search import SearchMode
from riad_agent.knowledge.store import QdrantKnowledgeBase
from riad_agent.schemas import KnowledgeHit


def hit_to_node(hit: KnowledgeHit) -> NodeWithScore:
    """A llama-index node for one knowledge hit."""
    node = TextNode(
        id_=hit.id,
        text=hit.text,
        metadata={
            "dataset": hit.dataset,
            "category": hit.category,
            "kind": hit.kind,
            "defect_type": hit.defect_type or "",
            "title": hit.title,
            "source": hit.source,
        },
    )
    return NodeWithScore(node=node, score=hit.score)


class KnowledgeRetriever(BaseRetriever):
    """Retrieve knowledge entries as llama-index nodes (hybrid search by default)."""

    def __init__(
        self,
        knowledge_base: QdrantKnowledgeBase,
        category: str | None = None,
        k: int = 4,
        mode: SearchMode = "hybrid",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.knowledge_base = knowledge_base
        self.category = category
        self.k = k
        self.mode = mode

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.knowledge_base.search(
            query_bundle.query_str, category=self.category, k=self.k, mode=self.mode
        )
        return [hit_to_node(hit) for hit in hits]


def vector_store(knowledge_base: QdrantKnowledgeBase) -> Any:
    """llama-index's ``QdrantVectorStore`` on the knowledge collection (shares the client).

    On the embedded store the client is this process's read copy of the live generation: reads
    only, and later writes (``kb.ingest``, other processes) are seen by a new ``vector_store``.
    """
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    return QdrantVectorStore(
        collection_name=knowledge_base.collection,
        client=knowledge_base.client,
        dense_vector_name=DENSE,
        sparse_vector_name=SPARSE,
        text_key="text",
    )
