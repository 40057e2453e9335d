"""llama-index access, the query builder and the ``kb`` CLI."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from riad_agent.commands.kb import app
from riad_agent.knowledge.backend import connect
from riad_agent.knowledge.embed import HashingEmbedder
from riad_agent.knowledge.llamaindex import KnowledgeRetriever, vector_store
from riad_agent.knowledge.loaders import load_riad
from riad_agent.knowledge.query import build_retrieval_query, position_words
from riad_agent.knowledge.store import QdrantKnowledgeBase
from riad_agent.schemas import Region
from riad_agent.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures" / "base"


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[QdrantKnowledgeBase]:
    store = QdrantKnowledgeBase(connect(Settings(data_dir=tmp_path / "data")), HashingEmbedder())
    store.ingest(load_riad(FIXTURES), scope="fixtures")
    yield store
    store.close()


def test_retriever_returns_nodes_with_scores(kb: QdrantKnowledgeBase) -> None:
    retriever = KnowledgeRetriever(kb, category="hazelnut", k=2)
    nodes = retriever.retrieve("ink letters printed on the shell")
    assert len(nodes) == 2
    assert nodes[0].node.node_id == "mvtec/hazelnut/print"
    assert nodes[0].node.metadata["category"] == "mvtec/hazelnut"
    assert nodes[0].score is not None and nodes[0].score >= (nodes[1].score or 0.0)
    assert "Visual cues" in nodes[0].node.get_content()


def test_llamaindex_vector_store_reads_the_collection(kb: QdrantKnowledgeBase) -> None:
    from llama_index.core.vector_stores.types import VectorStoreQuery

    store = vector_store(kb)
    query = VectorStoreQuery(
        query_embedding=kb.embedder.embed(["candle without its black wick"])[0].tolist(), similarity_top_k=1
    )
    result = store.query(query)
    assert result.nodes is not None and len(result.nodes) == 1
    assert result.nodes[0].metadata["entry_id"] == "visa/candle/missing_wick"
    assert "wick" in result.nodes[0].get_content()


def test_query_builder_uses_question_options_and_evidence() -> None:
    region = Region(x0=0, y0=0, x1=20, y1=20, score=0.9, area=300)
    query = build_retrieval_query(
        question="Is there any defect in the object?",
        options={"A": "Yes.", "B": "No."},
        category="mvtec/hazelnut",
        regions=[region],
        image_size=(200, 200),
        anomaly_score=0.8,
    )
    assert query == "hazelnut. clear defect. small anomaly at the top left"
    specific = build_retrieval_query(
        question="What type of defect is on the shell?", options={"A": "Crack", "B": "Hole", "C": "None"}
    )
    assert specific == "What type of defect is on the shell?. Crack. Hole"
    assert build_retrieval_query() == "defect appearance"
    described = build_retrieval_query(
        category="mvtec/hazelnut", description="One region, 40 px, elongated, darker."
    )
    assert described == "hazelnut. One region, 40 px, elongated, darker"  # the region's words join the query
    assert position_words(Region(x0=90, y0=90, x1=110, y1=110, score=1, area=1), (200, 200)) == "centre"
    assert position_words(Region(x0=180, y0=90, x1=200, y1=110, score=1, area=1), (200, 200)) == "right edge"


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RIAD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RIAD_EMBEDDER", "hashing")
    monkeypatch.delenv("QDRANT_URL", raising=False)
    monkeypatch.delenv("RIAD_QDRANT_URL", raising=False)
    monkeypatch.delenv("RIAD_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "base"
    shutil.copytree(FIXTURES, target)
    return target


def test_cli_ingest_list_search(cli_env: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(cli_env), "--format", "riad", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["added"]) == 12
    again = runner.invoke(app, ["ingest", str(cli_env)])
    assert again.exit_code == 0 and "0 added, 0 updated, 0 deleted" in again.stdout

    listed = runner.invoke(app, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    categories = {c["category"]: c for c in json.loads(listed.stdout)}
    assert "visa/candle" in categories and "missing_wick" in categories["visa/candle"]["defect_types"]

    found = runner.invoke(app, ["search", "candle without its black wick", "--k", "2", "--json"])
    assert found.exit_code == 0, found.output
    payload = json.loads(found.stdout)
    assert payload["hits"][0]["id"].endswith("candle/missing_wick")
    assert payload["category_guessed"] is True and payload["category"].endswith("/candle")

    sparse = runner.invoke(app, ["search", "rust", "--category", "visa/screw", "--mode", "sparse", "--json"])
    assert json.loads(sparse.stdout)["hits"][0]["id"] == "visa/screw/rust"


def test_cli_errors_are_one_line(cli_env: Path) -> None:
    runner = CliRunner()
    runner.invoke(app, ["ingest", str(cli_env)])
    bad = runner.invoke(app, ["search", "crack", "--category", "hazlenut"])
    assert bad.exit_code == 2
    assert bad.stderr.strip().startswith("UnknownCategoryError: unknown category 'hazlenut'")
    assert "Traceback" not in bad.output
    (cli_env / "mvtec" / "broken.yaml").write_text("dataset: [", encoding="utf-8")
    broken = runner.invoke(app, ["ingest", str(cli_env)])
    assert broken.exit_code == 2 and broken.stderr.startswith("KnowledgeFormatError:")
    mode = runner.invoke(app, ["search", "crack", "--mode", "fuzzy"])
    assert mode.exit_code == 2 and "InvalidRequestError" in mode.stderr


def test_cli_unreachable_server(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_URL", "http://127.0.0.1:9")
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 3
    assert result.stderr.startswith("BackendUnavailableError:") and "Traceback" not in result.output


def test_cli_eval_on_a_small_query_set(cli_env: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    runner.invoke(app, ["ingest", str(cli_env)])
    queries = tmp_path / "q.yaml"
    queries.write_text(
        "- {query: candle without its black wick, category: visa/candle,"
        " expected: visa/candle/missing_wick}\n"
        "- {query: ink letters printed on the nut, category: mvtec/hazelnut,"
        " expected: mvtec/hazelnut/print}\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["eval", "--queries", str(queries), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["queries"] == 2 and len(report["scores"]) == 6
    hybrid_on = next(s for s in report["scores"] if s["mode"] == "hybrid" and s["filtered"])
    assert hybrid_on["recall_at_1"] == 1.0 and hybrid_on["mrr"] == 1.0
