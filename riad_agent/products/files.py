"""The product memory's images on disk: ``<data dir>/products/<sha256>.png``, written once, never pruned.

Each image is stored as the PNG of its decoded working copy (upright, RGB, longest side at most
:data:`~riad_agent.imaging.WORKING_MAX_SIDE`), named by the SHA-256 of those PNG bytes, so the same
picture added twice is stored once. Unlike the blob store there is no size bound: references and
exemplars are kept until their product is removed (:meth:`ProductFiles.keep_only`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from riad_agent.errors import BlobNotFoundError, OutputWriteError
from riad_agent.imaging import encode_png, working_copy

_SUFFIX = ".png"


@dataclass(frozen=True)
class PreparedImage:
    """An image ready to store: its key, its PNG bytes and the stored pixels (what boxes refer to)."""

    key: str
    data: bytes
    image: Image.Image


class ProductFiles:
    """Content-addressed PNG files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """Where the image of ``key`` lives."""
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise BlobNotFoundError(f"{key!r} is not an image key (64 hex digits)")
        return self.root / f"{key}{_SUFFIX}"

    @staticmethod
    def prepare(image: Image.Image) -> PreparedImage:
        """The working copy of ``image`` as it will be stored, its PNG bytes and key (nothing written)."""
        stored = working_copy(image.convert("RGB"))
        data = encode_png(stored, compress_level=6)
        return PreparedImage(hashlib.sha256(data).hexdigest(), data, stored)

    def put(self, prepared: PreparedImage) -> str:
        """Write a prepared image (once); its key."""
        return self.put_png(prepared.data)

    def put_mask(self, mask: np.ndarray) -> str:
        """Store a boolean mask as a 1-bit PNG; its key."""
        buffer = io.BytesIO()
        Image.fromarray(mask.astype(bool)).save(buffer, format="PNG")
        return self.put_png(buffer.getvalue())

    def put_png(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        target = self.path(key)
        if target.is_file():
            return key
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".tmp-", delete=False) as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            Path(handle.name).replace(target)
        except OSError as exc:
            raise OutputWriteError(f"cannot store an image under {self.root}: {exc.strerror or exc}") from exc
        return key

    def open(self, key: str) -> Image.Image:
        """The stored image of ``key`` (RGB)."""
        try:
            with Image.open(self.path(key)) as image:
                return image.convert("RGB")
        except FileNotFoundError as exc:
            raise BlobNotFoundError(
                f"the product image {key[:12]} is missing from {self.root}; add the image again"
            ) from exc

    def open_mask(self, key: str) -> np.ndarray:
        """The stored mask of ``key`` as a boolean array (what :meth:`put_mask` stored)."""
        try:
            with Image.open(self.path(key)) as image:
                return np.asarray(image.convert("1"), dtype=bool)
        except FileNotFoundError as exc:
            raise BlobNotFoundError(
                f"the product mask {key[:12]} is missing from {self.root}; label the defect again"
            ) from exc

    def keep_only(self, keys: Iterable[str]) -> int:
        """Delete every stored image whose key is not in ``keys``; how many were deleted."""
        keep = {f"{key}{_SUFFIX}" for key in keys}
        removed = 0
        if not self.root.is_dir():
            return 0
        for path in self.root.glob(f"*{_SUFFIX}"):
            if path.name not in keep:
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
        return removed
