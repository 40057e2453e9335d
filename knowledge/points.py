"""How a knowledge entry is stored as a Qdrant point, and read back.

One point per entry: a named dense vector (:data:`DENSE`, cosine), a named sparse vector
(:data:`SPARSE`, hashed BM25) and the entry as payload. Point ids are uuid5 of the entry id.
"""

from __future__ import annotations

import uuid
from typing import Any

from qdrant_client import models

from riad_agent.knowledge.schema import KnowledgeEntry
from riad_agent.knowledge.sparse import SparseVector
from riad_agent.schemas import KnowledgeHit

DENSE = "dense"
SPARSE = "sparse"
POINT_NAMESPACE = uuid.UUID("6f1c1d52-8f5e-4b8e-9a37-2d0c5a1e7b21")


def point_id(entry_id: str) -> str:
    """Deterministic Qdrant point id of an entry."""
    return str(uuid.uuid5(POINT_NAMESPACE, entry_id))


def qdrant_sparse(vector: SparseVector) -> models.SparseVector:
    """Our sparse vector as Qdrant's."""
    return models.SparseVector(indices=vector.indices, values=vector.values)


def entry_payload(entry: KnowledgeEntry, scope: str) -> dict[str, Any]:
    """The payload stored with an entry's point (``scope`` names the source it was ingested from)."""
    return {
        "entry_id": entry.id,
        "dataset": entry.dataset,
        "category": entry.category_key,
        "name": entry.category,
        "kind": entry.kind,
        "defect_type": entry.defect_type,
        "title": entry.title,
        "text": entry.text,
        "search_text": entry.search_text,
        "source": entry.source,
        "scope": scope,
        "content_hash": entry.content_hash,
    }


def entry_from_payload(payload: dict[str, Any]) -> KnowledgeEntry:
    """The entry a stored payload describes."""
    return KnowledgeEntry(
        id=payload["entry_id"],
        dataset=payload["dataset"],
        category=payload["name"],
        kind=payload["kind"],
        defect_type=payload.get("defect_type"),
        title=payload["title"],
        text=payload["text"],
        search_text=payload["search_text"],
        source=payload.get("source", ""),
        content_hash=payload["content_hash"],
    )


def hit_from_point(point: models.ScoredPoint) -> KnowledgeHit:
    """A search hit from a scored point and its payload."""
    payload = point.payload or {}
    return KnowledgeHit(
        id=payload["entry_id"],
        score=float(point.score),
        dataset=payload["dataset"],
        category=payload["category"],
        kind=payload["kind"],
        defect_type=payload.get("defect_type"),
        title=payload["title"],
        text=payload["text"],
        source=payload.get("source", ""),
    )
