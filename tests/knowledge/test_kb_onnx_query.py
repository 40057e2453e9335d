"""The onnxruntime query path gives the same MiniLM vectors as torch, and falls back to torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from riad_agent.knowledge import embed, onnx_encoder
from riad_agent.knowledge.embed import MiniLMEmbedder

QUERIES = [
    "a thin dark line across the shell",
    "Is there any defect in the object? hazelnut crack",
    "bent lead",
]


def test_onnx_queries_match_torch(tmp_path: Path) -> None:
    torch_vectors = MiniLMEmbedder().embed(QUERIES)
    fast = MiniLMEmbedder(onnx_cache=tmp_path)
    onnx_vectors = fast.embed(QUERIES)
    assert list(tmp_path.glob("minilm-*.onnx"))  # exported once into the cache folder
    assert np.abs(onnx_vectors - torch_vectors).max() < 1e-4
    assert np.allclose(np.linalg.norm(onnx_vectors, axis=1), 1.0, atol=1e-5)
    # bulk ingestion (more than query_batch texts) stays on torch
    many = [f"entry {i}" for i in range(fast.query_batch + 1)]
    assert np.abs(fast.embed(many) - MiniLMEmbedder().embed(many)).max() < 1e-6


def test_without_onnxruntime_queries_use_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*args: object) -> None:
        raise ImportError("No module named 'onnxruntime'")

    monkeypatch.setattr(onnx_encoder, "OnnxEncoder", missing)
    embed._onnx_encoder.cache_clear()
    try:
        vectors = MiniLMEmbedder(onnx_cache=tmp_path / "other").embed(QUERIES[:1])
    finally:
        embed._onnx_encoder.cache_clear()
    assert np.abs(vectors - MiniLMEmbedder().embed(QUERIES[:1])).max() < 1e-6
