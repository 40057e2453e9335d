"""The Qdrant store: idempotent ingest, failure safety, search modes, categories, backend errors."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from riad_agent.errors import BackendUnavailableError, InvalidRequestError, UnknownCategoryError
from riad_agent.knowledge.backend import connect
from riad_agent.knowledge.embed import HashingEmbedder
from riad_agent.knowledge.factory import ensure_packaged_base, open_knowledge_base
from riad_agent.knowledge.loaders import default_base_path, load_riad
from riad_agent.knowledge.points import DENSE, SPARSE, point_id
from riad_agent.knowledge.store import QdrantKnowledgeBase
from riad_agent.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures" / "base"


class FailingEmbedder(HashingEmbedder):
    """Embeds the first batch, then fails: an ingest that dies half way through embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.calls > 1 or len(texts) > 2:
            raise RuntimeError("embedder crashed")
        return super().embed(texts)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    target = tmp_path / "base"
    shutil.copytree(FIXTURES, target)
    return target


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[QdrantKnowledgeBase]:
    settings = Settings(data_dir=tmp_path / "data", qdrant_url=None)
    store = QdrantKnowledgeBase(connect(settings), HashingEmbedder(), collection="test_kb")
    yield store
    store.close()


def _snapshot(kb: QdrantKnowledgeBase) -> dict[str, tuple[object, ...]]:
    """Every point's payload hash and vectors, keyed by entry id."""
    physical = kb.physical_collection()
    assert physical is not None
    points, _ = kb.client.scroll(physical, limit=1000, with_payload=True, with_vectors=True)
    out: dict[str, tuple[object, ...]] = {}
    for point in points:
        payload = point.payload or {}
        vectors = point.vector
        assert isinstance(vectors, dict)
        sparse = vectors[SPARSE]
        out[payload["entry_id"]] = (
            payload["content_hash"],
            payload["text"],
            tuple(np.round(np.asarray(vectors[DENSE]), 6)),
            tuple(sparse.indices),
            tuple(np.round(sparse.values, 6)),
        )
    return out


def test_first_ingest_adds_everything(kb: QdrantKnowledgeBase, base: Path) -> None:
    report = kb.ingest(load_riad(base), scope="fixtures")
    assert report.rebuilt and len(report.added) == 12 and not report.deleted
    assert kb.categories() == ["mvtec/hazelnut", "mvtec/screw", "visa/candle", "visa/screw"]
    info = {c.category: c for c in kb.list_categories()}
    assert info["mvtec/hazelnut"].defect_types == ["crack", "hole", "print"]
    assert info["mvtec/hazelnut"].has_normal
    physical = kb.physical_collection()
    assert physical is not None and physical != "test_kb"  # reached through the alias
    point = kb.client.retrieve(physical, [point_id("mvtec/hazelnut/crack")], with_payload=True)[0]
    assert point.payload is not None
    assert point.payload["category"] == "mvtec/hazelnut" and point.payload["kind"] == "defect"
    assert point.payload["source"] == "mvtec/hazelnut.yaml"


def test_reingest_changes_nothing(kb: QdrantKnowledgeBase, base: Path) -> None:
    kb.ingest(load_riad(base), scope="fixtures")
    before = _snapshot(kb)
    report = kb.ingest(load_riad(base), scope="fixtures")
    assert not report.changed and report.unchanged == 12
    assert _snapshot(kb) == before


def test_editing_one_entry_updates_only_it(kb: QdrantKnowledgeBase, base: Path) -> None:
    kb.ingest(load_riad(base), scope="fixtures")
    before = _snapshot(kb)
    file = base / "mvtec" / "hazelnut.yaml"
    file.write_text(file.read_text().replace("Insect damage.", "Insect larvae boring out."), encoding="utf-8")
    report = kb.ingest(load_riad(base), scope="fixtures")
    assert report.updated == ["mvtec/hazelnut/hole"] and not report.added and not report.deleted
    after = _snapshot(kb)
    changed = {i for i in before if before[i] != after[i]}
    assert changed == {"mvtec/hazelnut/hole"}


def test_removing_a_file_deletes_its_points(kb: QdrantKnowledgeBase, base: Path) -> None:
    kb.ingest(load_riad(base), scope="fixtures")
    (base / "visa" / "candle.yaml").unlink()
    report = kb.ingest(load_riad(base), scope="fixtures")
    assert report.deleted == ["visa/candle/missing_wick", "visa/candle/normal", "visa/candle/wax_melded"]
    assert "visa/candle" not in kb.categories()
    assert all(h.category != "visa/candle" for h in kb.search("wick of the candle", k=10))


def test_other_scopes_are_left_alone(kb: QdrantKnowledgeBase, base: Path) -> None:
    kb.ingest(load_riad(base / "mvtec"), scope="a")
    kb.ingest(load_riad(base / "visa"), scope="b")
    report = kb.ingest([], scope="b")
    assert len(report.deleted) == 5
    assert kb.categories() == ["mvtec/hazelnut", "mvtec/screw"]


def test_failed_ingest_leaves_the_collection_intact(
    kb: QdrantKnowledgeBase, base: Path, tmp_path: Path
) -> None:
    kb.ingest(load_riad(base), scope="fixtures")
    before = _snapshot(kb)
    hits_before = [h.id for h in kb.search("crack in the shell", k=3)]
    # a change to every file and a crash while embedding: nothing may be written
    for file in base.rglob("*.yaml"):
        file.write_text(
            file.read_text().replace("likely_cause: ", "likely_cause: Edited. "), encoding="utf-8"
        )
    kb.embedder = FailingEmbedder()
    with pytest.raises(RuntimeError, match="embedder crashed"):
        kb.ingest(load_riad(base), scope="fixtures")
    assert _snapshot(kb) == before
    # a forced rebuild that fails must not swap the alias either
    with pytest.raises(RuntimeError, match="embedder crashed"):
        kb.ingest(load_riad(base), scope="fixtures", rebuild=True)
    kb.embedder = HashingEmbedder()
    assert _snapshot(kb) == before
    assert [h.id for h in kb.search("crack in the shell", k=3)] == hits_before
    assert len(kb.client.get_collections().collections) == 1  # the half-built collection was dropped


def test_rebuild_on_new_embedder_swaps_collections(kb: QdrantKnowledgeBase, base: Path) -> None:
    kb.ingest(load_riad(base), scope="fixtures")
    old = kb.physical_collection()
    kb.embedder = HashingEmbedder(dimension=128)
    report = kb.ingest(load_riad(base), scope="fixtures")
    assert report.rebuilt
    assert kb.physical_collection() != old
    assert [c.name for c in kb.client.get_collections().collections] == [kb.physical_collection()]
    meta = kb.meta()
    assert meta is not None and meta.dimension == 128 and meta.embedder == "hashing-128"
    assert kb.search("crack", category="hazelnut", k=1)[0].id == "mvtec/hazelnut/crack"


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
def test_category_filter_keeps_hits_inside(kb: QdrantKnowledgeBase, base: Path, mode: str) -> None:
    kb.ingest(load_riad(base), scope="fixtures")
    hits = kb.search("scratches and rust on the metal screw head", category="visa/screw", k=5, mode=mode)
    assert hits and {h.category for h in hits} == {"visa/screw"}
    assert hits[0].id == "visa/screw/rust"
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))


def test_search_finds_the_right_defect_across_categories(kb: QdrantKnowledgeBase, base: Path) -> None:
    kb.ingest(load_riad(base), scope="fixtures")
    assert kb.search("candle without its black wick", k=1)[0].id == "visa/candle/missing_wick"
    assert kb.search("printed ink letters on the hazelnut shell", k=1)[0].id == "mvtec/hazelnut/print"
    assert (
        kb.search("flattened thread at the screw tip", k=1, mode="sparse")[0].id == "mvtec/screw/thread_top"
    )


def test_guess_category(kb: QdrantKnowledgeBase, base: Path) -> None:
    kb.ingest(load_riad(base), scope="fixtures")
    category, score = kb.guess_category("melted wax blob on a tea-light, wick still there")
    assert category == "visa/candle" and 0.5 < score <= 1.0
    category, _ = kb.guess_category("crack through the nut shell")
    assert category == "mvtec/hazelnut"


def test_resolve_category(kb: QdrantKnowledgeBase, base: Path) -> None:
    with pytest.raises(UnknownCategoryError, match="empty"):
        kb.resolve_category("hazelnut")
    kb.ingest(load_riad(base), scope="fixtures")
    assert kb.resolve_category("hazelnut") == "mvtec/hazelnut"
    assert kb.resolve_category("  Hazelnut ") == "mvtec/hazelnut"
    assert kb.resolve_category("MVTec-AD/hazelnut") == "mvtec/hazelnut"
    assert kb.resolve_category("visa/screw") == "visa/screw"
    with pytest.raises(UnknownCategoryError, match="ambiguous.*mvtec/screw, visa/screw"):
        kb.resolve_category("screw")
    with pytest.raises(UnknownCategoryError, match="close matches: mvtec/hazelnut"):
        kb.resolve_category("hazlenut")
    with pytest.raises(UnknownCategoryError, match="riad kb list"):
        kb.resolve_category("turbine_blade")
    with pytest.raises(UnknownCategoryError):
        kb.search("crack", category="hazlenut")


def test_bad_search_arguments(kb: QdrantKnowledgeBase, base: Path) -> None:
    kb.ingest(load_riad(base), scope="fixtures")
    with pytest.raises(InvalidRequestError):
        kb.search("   ")
    with pytest.raises(InvalidRequestError):
        kb.search("crack", k=0)
    assert kb.search("the of and", mode="sparse") == []  # only stop words: no sparse terms
    assert kb.search("the of and", mode="hybrid")  # falls back to dense


def test_empty_base_searches_to_nothing(kb: QdrantKnowledgeBase) -> None:
    assert kb.search("crack") == []
    assert kb.categories() == []
    assert kb.guess_category("crack") == (None, 0.0)


def test_unreachable_server_is_a_typed_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, qdrant_url="http://127.0.0.1:9", qdrant_timeout_s=1.0)
    with pytest.raises(BackendUnavailableError, match="127.0.0.1:9"):
        open_knowledge_base(settings, embedder=HashingEmbedder(), ingest_packaged=False)


@pytest.mark.skipif(not os.environ.get("QDRANT_URL"), reason="needs a Qdrant server in QDRANT_URL")
def test_real_server_round_trip(tmp_path: Path, base: Path) -> None:
    settings = Settings(data_dir=tmp_path, collection=f"riad_test_{os.getpid()}")
    kb = open_knowledge_base(settings, embedder=HashingEmbedder(), ingest_packaged=False)
    try:
        assert kb.ingest(load_riad(base), scope="fixtures").rebuilt
        assert not kb.ingest(load_riad(base), scope="fixtures").changed
        assert kb.search("candle without its black wick", k=1)[0].id == "visa/candle/missing_wick"
        assert {h.category for h in kb.search("rust", category="visa/screw", k=3)} == {"visa/screw"}
    finally:
        kb.clear()
        kb.close()


def test_crash_between_writes_leaves_a_searchable_base_that_converges(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # on a client that takes writes at once (a Qdrant server), a crash between writes leaves a mix
    kb = QdrantKnowledgeBase(QdrantClient(location=":memory:"), HashingEmbedder(), collection="test_kb")
    kb.ingest(load_riad(base), scope="fixtures")
    (base / "visa" / "candle.yaml").unlink()
    file = base / "mvtec" / "hazelnut.yaml"
    file.write_text(file.read_text().replace("Insect damage.", "Insect larvae."), encoding="utf-8")

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed before the delete")

    monkeypatch.setattr(kb.client, "delete", crash)
    with pytest.raises(RuntimeError, match="killed"):
        kb.ingest(load_riad(base), scope="fixtures")
    # the update landed, the delete did not: every point is a whole old or new version
    assert kb.search("crack through the shell", category="hazelnut", k=1)[0].id == "mvtec/hazelnut/crack"
    monkeypatch.undo()
    report = kb.ingest(load_riad(base), scope="fixtures")
    assert len(report.deleted) == 3 and not report.updated
    assert "visa/candle" not in kb.categories()


def test_a_failed_write_to_the_embedded_store_publishes_nothing(
    kb: QdrantKnowledgeBase, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kb.ingest(load_riad(base), scope="fixtures")
    before = _snapshot(kb)
    (base / "visa" / "candle.yaml").unlink()
    file = base / "mvtec" / "hazelnut.yaml"
    file.write_text(file.read_text().replace("Insect damage.", "Insect larvae."), encoding="utf-8")

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed before the delete")

    monkeypatch.setattr(QdrantClient, "delete", crash)  # the writer's private copy is another client
    with pytest.raises(RuntimeError, match="killed"):
        kb.ingest(load_riad(base), scope="fixtures")
    assert _snapshot(kb) == before  # neither the update nor the delete is visible
    monkeypatch.undo()
    report = kb.ingest(load_riad(base), scope="fixtures")
    assert len(report.deleted) == 3 and report.updated == ["mvtec/hazelnut/hole"]
    assert "visa/candle" not in kb.categories()


def test_rrf_fusion_option(kb: QdrantKnowledgeBase, base: Path) -> None:
    kb.ingest(load_riad(base), scope="fixtures")
    kb.fusion = "rrf"
    hits = kb.search("candle without its black wick", k=3)
    assert hits[0].id == "visa/candle/missing_wick"
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))


@pytest.mark.skipif(not any(default_base_path().rglob("*.yaml")), reason="no packaged knowledge base")
def test_open_knowledge_base_fills_a_fresh_store_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, qdrant_url=None, embedder="hashing")
    kb = open_knowledge_base(settings)
    try:
        packaged = kb.categories()
        assert len(packaged) == len(list(default_base_path().rglob("*.yaml")))
        assert not ensure_packaged_base(kb)  # same fingerprint: nothing to do
    finally:
        kb.close()
    again = open_knowledge_base(settings)
    try:
        assert again.categories() == packaged
    finally:
        again.close()


def test_a_store_with_only_user_knowledge_is_left_alone(kb: QdrantKnowledgeBase, base: Path) -> None:
    kb.ingest(load_riad(base), scope="mine")
    assert not ensure_packaged_base(kb)
    assert kb.categories() == ["mvtec/hazelnut", "mvtec/screw", "visa/candle", "visa/screw"]
