"""The fast hybrid path: same hits as embedding first, id filters equal to payload filters, helper thread."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import models

from riad_agent.knowledge.backend import connect
from riad_agent.knowledge.embed import HashingEmbedder, start_query_embedding
from riad_agent.knowledge.loaders import load_riad
from riad_agent.knowledge.offload import HelperThread, run_beside
from riad_agent.knowledge.store import QdrantKnowledgeBase
from riad_agent.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures" / "base"
QUERIES = ["dark crack in the shell", "a hole", "scratch on the surface", "the print is missing"]


class ThreadedEmbedder(HashingEmbedder):
    """Hashing vectors whose work happens in the call ``start_query`` returns (as MiniLM on onnxruntime)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = 0

    def start_query(self, text: str) -> Callable[[], np.ndarray]:
        self.started += 1
        return lambda: self.embed([text])[0]


class NoisyEmbedder(HashingEmbedder):
    """Fails on the query path only."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 1:
            raise RuntimeError("embedder down")
        return super().embed(texts)


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[QdrantKnowledgeBase]:
    base = tmp_path / "base"
    shutil.copytree(FIXTURES, base)
    settings = Settings(data_dir=tmp_path / "data", qdrant_url=None)
    store = QdrantKnowledgeBase(connect(settings), ThreadedEmbedder(), collection="test_kb")
    store.ingest(load_riad(base))
    yield store
    store.close()


def _ids(hits: Sequence[object]) -> list[tuple[str, float]]:
    return [(h.id, round(h.score, 9)) for h in hits]  # type: ignore[attr-defined]


def test_overlapped_hybrid_equals_embed_then_search(kb: QdrantKnowledgeBase) -> None:
    embedder = kb.embedder
    assert isinstance(embedder, ThreadedEmbedder)
    for query in QUERIES:
        for category in [None, *kb.categories()]:
            fast = kb.search(query, category=category, k=10)
            slow = kb.search_encoded(kb.encode_query(query), category=category, k=10)
            assert _ids(fast) == _ids(slow)
            assert all(h.category == category for h in fast if category)
    assert embedder.started > 0


def test_id_filter_selects_the_same_points_as_the_payload_filter(kb: QdrantKnowledgeBase) -> None:
    assert kb.local
    for category in kb.categories():
        where = kb.searcher.category_filter(category)
        assert where is not None and isinstance(where.must, list)
        assert isinstance(where.must[0], models.HasIdCondition)
        by_field = models.Filter(
            must=[models.FieldCondition(key="category", match=models.MatchValue(value=category))]
        )
        expected, _ = kb.client.scroll(kb.collection, scroll_filter=by_field, limit=1000)
        got, _ = kb.client.scroll(kb.collection, scroll_filter=where, limit=1000)
        assert sorted(str(p.id) for p in got) == sorted(str(p.id) for p in expected)


def test_filters_follow_ingests(kb: QdrantKnowledgeBase, tmp_path: Path) -> None:
    entries = load_riad(tmp_path / "base")

    def members(category: str) -> set[str]:
        return {e.id for e in entries if e.category_key == category}

    def found(category: str) -> set[str]:  # hashing vectors are never orthogonal: every member is a hit
        return {h.id for h in kb.search("crack", category=category, k=100)}

    assert all(found(c) == members(c) for c in kb.categories())
    kb.ingest(entries[::2])  # drops every other entry
    kept = {e.id for e in entries[::2]}
    assert all(found(c) == members(c) & kept for c in kb.categories())
    kb.ingest(entries)
    assert all(found(c) == members(c) for c in kb.categories())
    kb.clear()
    assert kb.search("crack", k=5) == []


def test_other_embedders_and_errors(kb: QdrantKnowledgeBase) -> None:
    plain = HashingEmbedder()
    assert np.array_equal(start_query_embedding(plain, "a hole")(), plain.embed(["a hole"])[0])
    kb.embedder = NoisyEmbedder()
    with pytest.raises(RuntimeError, match="embedder down"):
        kb.search("a hole in the fabric")


def test_helper_thread_results_errors_and_order() -> None:
    helper = HelperThread("test-helper")
    seen: list[int] = []
    futures = [helper.submit(lambda i=i: seen.append(i) or i) for i in range(5)]  # type: ignore[func-returns-value]
    assert [f.result(timeout=10) for f in futures] == list(range(5))
    assert seen == list(range(5))

    def boom() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        helper.submit(boom).result(timeout=10)
    names = {t.name for t in threading.enumerate()}
    assert "test-helper" in names
    assert helper.submit(lambda: 7).result(timeout=10) == 7


def test_run_beside_runs_both_and_waits_on_errors() -> None:
    helper = HelperThread("test-beside")
    done: list[str] = []
    assert run_beside(helper, lambda: done.append("side") or 2, lambda: 1) == (1, 2)  # type: ignore[func-returns-value]
    assert done == ["side"]

    def fail() -> None:
        raise RuntimeError("main failed")

    with pytest.raises(RuntimeError, match="main failed"):
        run_beside(helper, lambda: time.sleep(0.1) or done.append("late"), fail)  # type: ignore[func-returns-value]
    seen = list(done)  # the side job was cancelled or has finished: nothing changes later
    time.sleep(0.3)
    assert done == seen
    busy = threading.Event()
    helper.submit(lambda: busy.wait(5))  # helper busy: the side job is cancelled and run here
    assert run_beside(helper, threading.get_ident, lambda: None)[1] == threading.get_ident()
    busy.set()
