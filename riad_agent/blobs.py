"""A content-addressed blob store: write-once files named by the SHA-256 of their bytes.

The inspection graph keeps images and arrays here (or refers to the caller's own file) so that its
state, and every checkpoint of it, holds a short key instead of pixels. A blob never changes once
written: the same bytes give the same key, and writing them again only refreshes the file's time.
The store is bounded: past ``max_bytes`` the least recently written or reused blobs are deleted,
so a process that inspects for weeks does not fill the disk; reading a pruned blob raises
:class:`~riad_agent.errors.BlobNotFoundError`.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from riad_agent.errors import BlobNotFoundError, OutputWriteError

#: After pruning, the store holds at most this share of ``max_bytes`` (so pruning is not per write).
PRUNE_TO = 0.8


def sha256_hex(data: bytes) -> str:
    """The key of ``data``: its SHA-256 as 64 lower-case hex digits."""
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """Write-once files under ``root``, two levels of fan-out by key (``ab/cdef...``), at most ``max_bytes``."""

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._bytes: int | None = None  # running total, counted on the first write of this process

    def path(self, key: str) -> Path:
        """Where the blob of ``key`` lives (whether or not it exists)."""
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise BlobNotFoundError(f"{key!r} is not a blob key (64 hex digits)")
        return self.root / key[:2] / key[2:]

    def put(self, data: bytes) -> str:
        """Store ``data`` once and return its key."""
        key = sha256_hex(data)
        target = self.path(key)
        if target.is_file():
            os.utime(target)  # recently used: pruned last
            return key
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".tmp-", delete=False) as handle:
                handle.write(data)
            Path(handle.name).replace(target)
        except OSError as exc:
            raise OutputWriteError(
                f"cannot write blob {key[:12]} under {self.root}: {exc.strerror or exc}"
            ) from exc
        self._grew(len(data), keep=target)
        return key

    def get(self, key: str) -> bytes:
        """The bytes of ``key``; :class:`BlobNotFoundError` when it is not stored."""
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFoundError(
                f"blob {key[:12]} is not in {self.root} (pruned by the size limit RIAD_BLOB_MAX_MB, "
                "or written under another data dir); inspect the image again"
            ) from exc

    def put_array(self, array: np.ndarray) -> str:
        """Store an array (``.npy`` bytes: dtype and shape included) and return its key."""
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        return self.put(buffer.getvalue())

    def get_array(self, key: str) -> np.ndarray:
        """The array stored under ``key`` by :meth:`put_array`."""
        array: np.ndarray = np.load(io.BytesIO(self.get(key)), allow_pickle=False)
        return array

    def size_bytes(self) -> int:
        """Bytes the stored blobs take (a scan of the folder)."""
        return sum(size for _, _, size in self._files())

    def prune(self, older_than_s: float | None = None, max_bytes: int | None = None) -> int:
        """Delete blobs unused for ``older_than_s`` seconds and/or the least recently used ones until at
        most ``max_bytes`` remain; returns how many were deleted."""
        files = sorted(self._files())  # oldest first
        total = sum(size for _, _, size in files)
        cutoff = time.time() - older_than_s if older_than_s is not None else None
        removed = 0
        for mtime, path, size in files:
            too_old = cutoff is not None and mtime < cutoff
            too_big = max_bytes is not None and total > max_bytes
            if not (too_old or too_big):
                continue
            path.unlink(missing_ok=True)
            total -= size
            removed += 1
        with self._lock:
            self._bytes = total
        return removed

    def _grew(self, added: int, keep: Path) -> None:
        if self.max_bytes is None:
            return
        with self._lock:
            if self._bytes is None:
                self._bytes = self.size_bytes()  # includes the blob just written
            else:
                self._bytes += added
            over = self._bytes > self.max_bytes
        if over:
            os.utime(keep)  # the blob being written is the newest: kept
            self.prune(max_bytes=int(self.max_bytes * PRUNE_TO))

    def _files(self) -> list[tuple[float, Path, int]]:
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.glob("??/*"):
            if path.name.startswith(".tmp-"):
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:  # pruned by another process meanwhile
                continue
            found.append((stat.st_mtime, path, stat.st_size))
        return found
