"""The memory bank of normal patch features: coreset subsampling, chunked nearest neighbours, disk cache.

Distances are computed in chunks with ``torch.cdist`` so memory stays bounded (``chunk`` query rows
times the bank size). Large banks are reduced by greedy (k-center) coreset selection, run on a random
projection of the features so each step costs one pass over ``N x projection_dim`` numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from riad_agent.errors import OutputWriteError


@dataclass
class MemoryBank:
    """Normal patch features and, per row, the index of the reference image it came from."""

    features: torch.Tensor  # (N, D) float32
    owners: torch.Tensor  # (N,) int64
    n_references: int
    grid: tuple[int, int]
    backbone_id: str
    config_key: str
    calibration: dict[str, float] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.features.shape[0])


def greedy_coreset(
    features: torch.Tensor,
    target: int,
    projection_dim: int = 64,
    seed: int = 0,
) -> torch.Tensor:
    """Indices of ``target`` rows chosen by greedy k-center selection (each pick the farthest point).

    The selection maximises coverage: every dropped row stays close to some kept row. Distances use
    a seeded random projection to ``projection_dim`` dimensions; the loop runs in numpy float32
    (one matrix-vector product per pick), which is several times faster than torch for these
    small sequential steps on CPU.
    """
    count = int(features.shape[0])
    if target >= count:
        return torch.arange(count)
    if target < 1:
        raise ValueError("coreset target must be at least 1")
    rng = np.random.default_rng(seed)
    reduced = features.detach().float().cpu().numpy()
    if reduced.shape[1] > projection_dim:
        matrix = rng.standard_normal((reduced.shape[1], projection_dim)).astype(np.float32)
        reduced = reduced @ (matrix / np.float32(projection_dim**0.5))
    reduced = np.ascontiguousarray(reduced, dtype=np.float32)
    squared_norms = np.einsum("ij,ij->i", reduced, reduced)
    nearest = np.full(count, np.inf, dtype=np.float32)
    chosen = np.empty(target, dtype=np.int64)
    last = int(rng.integers(count))
    chosen[0] = last
    for step in range(1, target):
        centre = reduced[last]
        distances = squared_norms - 2.0 * (reduced @ centre) + float(centre @ centre)
        np.minimum(nearest, distances, out=nearest)
        last = int(np.argmax(nearest))
        chosen[step] = last
    return torch.from_numpy(chosen)


def nearest_distances(
    queries: torch.Tensor,
    bank: torch.Tensor,
    chunk: int = 2048,
    bank_chunk: int = 32768,
    exclude: torch.Tensor | None = None,
    exclude_owner: int | None = None,
) -> torch.Tensor:
    """Euclidean distance from each query row to its nearest bank row, computed in bounded chunks.

    With ``exclude`` (the bank's owner ids) and ``exclude_owner``, rows of that owner are skipped
    (leave-one-out scoring of a reference against the others).
    """
    if bank.shape[0] == 0:
        raise ValueError("the memory bank is empty")
    queries = queries.float()
    bank = bank.float()
    result = torch.empty(queries.shape[0])
    skip = None if exclude is None or exclude_owner is None else exclude == exclude_owner
    bank_norms = (bank * bank).sum(dim=1)
    for lo in range(0, queries.shape[0], chunk):
        block = queries[lo : lo + chunk]
        best = torch.full((block.shape[0],), float("inf"))
        for blo in range(0, bank.shape[0], bank_chunk):
            # |b|^2 - 2 q.b in one matrix product; |q|^2 and the square root only for the minimum
            partial = torch.addmm(
                bank_norms[blo : blo + bank_chunk], block, bank[blo : blo + bank_chunk].T, alpha=-2
            )
            if skip is not None:
                partial[:, skip[blo : blo + bank_chunk]] = float("inf")
            best = torch.minimum(best, partial.min(dim=1).values)
        result[lo : lo + chunk] = (best + (block * block).sum(dim=1)).clamp_min(0).sqrt()
    return result


def image_digest(image: Image.Image) -> str:
    """Content hash of one image (mode, size and pixels), hex."""
    h = hashlib.sha256()
    h.update(f"{image.mode}:{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def _fingerprint(digests: Sequence[str]) -> str:
    return hashlib.sha256("".join(sorted(digests)).encode()).hexdigest()


def reference_fingerprint(references: Sequence[Image.Image]) -> str:
    """Order-independent content hash of the reference images (mode, size and pixels)."""
    return _fingerprint([image_digest(image) for image in references])


def in_content_order(references: Sequence[Image.Image]) -> tuple[list[Image.Image], str]:
    """The references sorted by content, and their fingerprint (each image hashed once): a bank built
    from them in this order is the same bank whatever order the caller gave, as its key says."""
    digests = [image_digest(image) for image in references]
    order = sorted(range(len(references)), key=digests.__getitem__)
    return [references[index] for index in order], _fingerprint(digests)


def bank_key(references: Sequence[Image.Image], backbone_id: str, config_key: str) -> str:
    """Cache key: reference content + backbone id + feature/bank configuration."""
    return key_of(reference_fingerprint(references), backbone_id, config_key)


def key_of(fingerprint: str, backbone_id: str, config_key: str) -> str:
    """The cache key of references with this :func:`reference_fingerprint`."""
    blob = f"{fingerprint}|{backbone_id}|{config_key}".encode()
    return hashlib.sha256(blob).hexdigest()[:32]


class BankCache:
    """Memory banks on disk as safetensors files, one per key, under a folder given by the caller.

    With ``max_bytes`` the folder is kept under that size: after each save the least recently used
    banks (oldest modification time; a load refreshes it) are deleted. Another process may delete a
    bank this one is about to read; that read then misses and the bank is rebuilt.
    """

    def __init__(self, folder: Path, max_bytes: int | None = None) -> None:
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.folder = Path(folder)
        self.max_bytes = max_bytes

    def path(self, key: str) -> Path:
        return self.folder / f"bank-{key}.safetensors"

    def load(self, key: str) -> MemoryBank | None:
        """The cached bank, or None when absent or unreadable (a corrupt file is rebuilt)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            tensors = load_file(str(path))
            header = json.loads(_read_metadata(path)["riad"])
            return MemoryBank(
                features=tensors["features"],
                owners=tensors["owners"],
                n_references=int(header["n_references"]),
                grid=(int(header["grid"][0]), int(header["grid"][1])),
                backbone_id=str(header["backbone_id"]),
                config_key=str(header["config_key"]),
                calibration={k: float(v) for k, v in header["calibration"].items()},
                meta={k: str(v) for k, v in header.get("meta", {}).items()},
            )
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError):
            return None
        finally:
            _touch(path)

    def save(self, key: str, bank: MemoryBank) -> Path:
        header = {
            "n_references": bank.n_references,
            "grid": list(bank.grid),
            "backbone_id": bank.backbone_id,
            "config_key": bank.config_key,
            "calibration": bank.calibration,
            "meta": bank.meta,
        }
        path = self.path(key)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            save_file(
                {"features": bank.features.contiguous(), "owners": bank.owners.contiguous()},
                str(tmp),
                metadata={"riad": json.dumps(header)},
            )
            tmp.replace(path)
        except OSError as exc:
            raise OutputWriteError(f"cannot write the expert bank cache {path}: {exc}") from exc
        self.prune(keep=path)
        return path

    def size_bytes(self) -> int:
        """Bytes the cached banks take now."""
        return sum(size for _, size, _ in self._entries())

    def prune(self, keep: Path | None = None) -> int:
        """Delete least recently used banks until the folder fits ``max_bytes``; returns how many went.

        ``keep`` (the bank just written) is never deleted, even when it alone is over the limit.
        """
        if self.max_bytes is None:
            return 0
        entries = sorted(self._entries(), key=lambda entry: entry[2])  # oldest first
        total = sum(size for _, size, _ in entries)
        removed = 0
        for path, size, _ in entries:
            if total <= self.max_bytes:
                break
            if keep is not None and path == keep:
                continue
            try:
                path.unlink(missing_ok=True)  # another process may have pruned it first
            except OSError:
                continue
            total -= size
            removed += 1
        return removed

    def _entries(self) -> list[tuple[Path, int, float]]:
        entries = []
        for path in self.folder.glob("bank-*.safetensors"):
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((path, stat.st_size, stat.st_mtime))
        return entries


def _touch(path: Path) -> None:
    """Mark a bank as recently used (its modification time orders the pruning)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def _read_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})
