"""Hashing BM25 and score fusion, checked against hand-computed values."""

from __future__ import annotations

import math

import pytest

from riad_agent.knowledge.fusion import dbsf, normalise
from riad_agent.knowledge.sparse import HashingBM25, stem, tokenize


def test_tokenize_lowercases_drops_stop_words_and_stems() -> None:
    assert tokenize("The Cracks in THE shells, scratched!") == ["crack", "shell", "scratch"]
    assert stem("glass") == "glass" and stem("stories") == "story" and stem("boxes") == "box"


def test_bm25_dot_product_is_the_okapi_score() -> None:
    bm25 = HashingBM25(k1=1.2, b=0.75)
    docs = ["dark crack on shell", "hole in shell", "print on shell shell"]
    stats = bm25.fit(docs)
    assert stats.n_docs == 3 and stats.avgdl == pytest.approx(8 / 3)
    doc = bm25.document_vector(docs[0], stats.avgdl)
    query = bm25.query_vector("crack crack", stats)
    assert len(query.indices) == 1  # repeated query terms count once
    score = sum(
        v * dict(zip(doc.indices, doc.values, strict=True)).get(i, 0.0)
        for i, v in zip(query.indices, query.values, strict=True)
    )
    idf = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    tf_part = 1 * 2.2 / (1 + 1.2 * (1 - 0.75 + 0.75 * 3 / (8 / 3)))
    assert score == pytest.approx(idf * tf_part)
    # a term in every document weighs less than a rare one
    assert bm25.query_vector("shell", stats).values[0] < query.values[0]


def test_dbsf_rescales_fills_and_weights() -> None:
    assert normalise([1.0, 1.0]) == [0.5, 0.5]
    dense = [("a", 0.9), ("b", 0.8), ("c", 0.1)]
    sparse = [("b", 6.0), ("c", 1.0)]  # "a" shares no term: BM25 score 0
    fused = dict(dbsf([dense, sparse], [0.5, 0.5], fills=[None, 0.0]))
    assert set(fused) == {"a", "b", "c"}
    assert max(fused, key=lambda k: fused[k]) == "b"
    dense_only = dbsf([dense, sparse], [1.0, 0.0], fills=[None, 0.0])
    assert [k for k, _ in dense_only] == ["a", "b", "c"]
    with pytest.raises(ValueError):
        dbsf([dense], [0.5, 0.5])
