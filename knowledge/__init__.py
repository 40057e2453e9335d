"""The defect knowledge base and its retrieval (installed as ``riad_agent.knowledge``)."""

from riad_agent.knowledge.categories import CategoryInfo
from riad_agent.knowledge.factory import open_knowledge_base
from riad_agent.knowledge.schema import CategoryFile, KnowledgeEntry
from riad_agent.knowledge.store import QdrantKnowledgeBase
from riad_agent.knowledge.writer import IngestReport

__all__ = [
    "CategoryFile",
    "CategoryInfo",
    "IngestReport",
    "KnowledgeEntry",
    "QdrantKnowledgeBase",
    "open_knowledge_base",
]
