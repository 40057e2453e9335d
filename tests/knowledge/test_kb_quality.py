"""Retrieval quality on the packaged base and query set with MiniLM (skipped until both exist)."""

from __future__ import annotations

from pathlib import Path

import pytest

from riad_agent.knowledge.backend import connect
from riad_agent.knowledge.embed import MiniLMEmbedder
from riad_agent.knowledge.evaluate import default_queries_path, evaluate, load_queries
from riad_agent.knowledge.factory import ensure_packaged_base
from riad_agent.knowledge.loaders import default_base_path
from riad_agent.knowledge.store import QdrantKnowledgeBase
from riad_agent.settings import Settings

pytestmark = pytest.mark.skipif(
    not default_queries_path().is_file() or not any(default_base_path().rglob("*.yaml")),
    reason="the packaged knowledge base or its query set is missing",
)


def test_hybrid_minilm_recall(tmp_path: Path) -> None:
    queries = load_queries()
    assert len(queries) >= 150
    kb = QdrantKnowledgeBase(connect(Settings(data_dir=tmp_path)), MiniLMEmbedder())
    try:
        assert ensure_packaged_base(kb)
        known = {f"{c.category}/{t}" for c in kb.list_categories() for t in [*c.defect_types, "normal"]}
        assert {q.expected for q in queries} <= known, "every expected id must exist in the base"
        report = evaluate(kb, queries, modes=("hybrid",))
    finally:
        kb.close()
    filtered = report.get("hybrid", filtered=True)
    unfiltered = report.get("hybrid", filtered=False)
    assert filtered.recall_at_1 >= 0.85, filtered.misses_at_1
    assert filtered.recall_at_3 >= 0.95
    assert unfiltered.recall_at_3 >= 0.80  # without the category the right entry is still near the top
