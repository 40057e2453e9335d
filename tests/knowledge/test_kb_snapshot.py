"""The embedded store's snapshot: every kind of vector comes back as it went in, whatever the names' order."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from riad_agent.errors import KnowledgeFormatError
from riad_agent.knowledge import snapshot


def _client() -> QdrantClient:
    client = QdrantClient(location=":memory:")
    # created in an order that is not the names' sorted order
    client.create_collection(
        "parts",
        vectors_config={
            "image": models.VectorParams(size=3, distance=models.Distance.COSINE),
            "words": models.VectorParams(size=2, distance=models.Distance.DOT),
            "cells_0": models.VectorParams(
                size=4,
                distance=models.Distance.DOT,
                multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
            ),
        },
        sparse_vectors_config={"terms": models.SparseVectorParams()},
        metadata={"owner": "test"},
    )
    client.upsert(
        "parts",
        [
            models.PointStruct(id=1, vector={"image": [1.0, 0.0, 0.0]}, payload={"kind": "reference"}),
            models.PointStruct(
                id=2,
                vector={
                    "words": [0.6, 0.8],
                    "cells_0": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]],
                    "terms": models.SparseVector(indices=[3, 7], values=[0.5, 1.5]),
                },
                payload={"kind": "defect"},
            ),
            models.PointStruct(id=3, vector={"cells_0": [[0.0, 0.0, 1.0, 0.0]]}, payload={"kind": "defect"}),
        ],
    )
    return client


def _vectors(client: QdrantClient) -> dict[int, dict[str, object]]:
    points, _ = client.scroll("parts", with_vectors=True, with_payload=True)
    return {int(p.id): dict(p.vector) if isinstance(p.vector, dict) else {} for p in points}


def test_dense_sparse_and_multivectors_survive_a_snapshot() -> None:
    original = _client()
    copied = snapshot.restore(snapshot.dump(original))
    before, after = _vectors(original), _vectors(copied)
    assert after.keys() == before.keys()
    for point, vectors in before.items():
        assert after[point].keys() == vectors.keys()
        for name, value in vectors.items():
            if isinstance(value, models.SparseVector):
                assert after[point][name] == value
            else:
                np.testing.assert_allclose(np.asarray(after[point][name]), np.asarray(value), rtol=1e-6)
    config = copied.get_collection("parts").config
    assert config.metadata == {"owner": "test"}
    cells = config.params.vectors["cells_0"]  # type: ignore[index]
    assert cells.multivector_config is not None and cells.size == 4
    # the multivector is searchable as one
    hits = copied.query_points("parts", query=[[0.0, 0.0, 1.0, 0.0]], using="cells_0", limit=2).points
    assert hits[0].id == 3


def test_a_snapshot_of_an_unknown_format_is_refused_with_the_formats_this_code_reads() -> None:
    arrays = snapshot.dump(_client())
    manifest = snapshot._json(arrays["manifest"])
    manifest["format"] = 99
    arrays["manifest"] = snapshot._text(manifest)
    with pytest.raises(KnowledgeFormatError, match="reads 1, 2"):
        snapshot.restore(arrays)
