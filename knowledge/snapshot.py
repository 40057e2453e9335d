"""A Qdrant client's whole content as plain arrays: dump it, write it as one file, load it back.

The embedded store keeps each generation in one ``.npz`` file (no pickles): a JSON manifest
(collections with their vector configs and metadata, aliases), and per collection the point ids
and payloads (JSON), every dense vector as a float32 matrix, every multivector (a set of vectors per
point, e.g. a defect's cells) as one float32 matrix of all rows with each point's row offsets, and
every sparse vector as CSR arrays, each with a mask of the points that have it. Loading fills an in-memory Qdrant client, so a
process reads its own copy and never holds a lock on the files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from riad_agent.errors import KnowledgeFormatError

SNAPSHOT_FORMAT = 2
#: Formats this code reads: 1 had no multivectors (its files load unchanged).
READABLE_FORMATS = (1, 2)
_SCROLL = 1024
_UPSERT = 256


def _text(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value, sort_keys=True).encode("utf-8"), dtype=np.uint8)


def _json(array: np.ndarray) -> Any:
    return json.loads(array.tobytes().decode("utf-8"))


def _dense_names(params: models.CollectionParams) -> dict[str, models.VectorParams]:
    vectors = params.vectors
    if vectors is None:
        return {}
    if not isinstance(vectors, dict):
        raise KnowledgeFormatError(
            "the knowledge store holds a collection with an unnamed vector; only named ones"
        )
    return vectors


def _dump_collection(
    client: QdrantClient, name: str, prefix: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    info = client.get_collection(name)
    params = info.config.params
    dense = _dense_names(params)
    sparse = params.sparse_vectors or {}
    records: list[models.Record] = []
    offset: Any = None
    while True:
        batch, offset = client.scroll(
            name, limit=_SCROLL, offset=offset, with_payload=True, with_vectors=True
        )
        records.extend(batch)
        if offset is None:
            break
    arrays: dict[str, np.ndarray] = {
        f"{prefix}points": _text([{"id": r.id, "payload": r.payload or {}} for r in records])
    }
    # indices follow the names' sorted order, as the manifest (JSON with sorted keys) lists them
    for index, (vector, config) in enumerate(sorted(dense.items())):
        if config.multivector_config is not None:
            arrays.update(_dump_multivector(records, vector, config.size, f"{prefix}multi{index}"))
            continue
        matrix = np.zeros((len(records), config.size), dtype=np.float32)
        mask = np.zeros(len(records), dtype=bool)
        for row, record in enumerate(records):
            value = record.vector.get(vector) if isinstance(record.vector, dict) else None
            if isinstance(value, list):
                matrix[row], mask[row] = np.asarray(value, dtype=np.float32), True
        arrays[f"{prefix}dense{index}"], arrays[f"{prefix}dense{index}_mask"] = matrix, mask
    for index, vector in enumerate(sorted(sparse)):
        indptr, indices, values = [0], [], []
        mask = np.zeros(len(records), dtype=bool)
        for row, record in enumerate(records):
            value = record.vector.get(vector) if isinstance(record.vector, dict) else None
            if isinstance(value, models.SparseVector):
                indices.extend(value.indices)
                values.extend(value.values)
                mask[row] = True
            indptr.append(len(indices))
        arrays[f"{prefix}sparse{index}_indptr"] = np.asarray(indptr, dtype=np.int64)
        arrays[f"{prefix}sparse{index}_indices"] = np.asarray(indices, dtype=np.int64)
        arrays[f"{prefix}sparse{index}_values"] = np.asarray(values, dtype=np.float64)
        arrays[f"{prefix}sparse{index}_mask"] = mask
    description = {
        "name": name,
        "dense": {key: value.model_dump(mode="json", exclude_none=True) for key, value in dense.items()},
        "sparse": {key: value.model_dump(mode="json", exclude_none=True) for key, value in sparse.items()},
        "metadata": info.config.metadata,
    }
    return description, arrays


def _dump_multivector(
    records: list[models.Record], vector: str, size: int, key: str
) -> dict[str, np.ndarray]:
    """One multivector of every point: all rows stacked, each point's row offsets, which points have it."""
    blocks, indptr = [], [0]
    mask = np.zeros(len(records), dtype=bool)
    for row, record in enumerate(records):
        value = record.vector.get(vector) if isinstance(record.vector, dict) else None
        if isinstance(value, list) and value:
            block = np.asarray(value, dtype=np.float32).reshape(-1, size)
            blocks.append(block)
            mask[row] = True
        indptr.append(indptr[-1] + (len(blocks[-1]) if mask[row] else 0))
    values = np.concatenate(blocks) if blocks else np.zeros((0, size), dtype=np.float32)
    return {f"{key}_values": values, f"{key}_indptr": np.asarray(indptr, dtype=np.int64), f"{key}_mask": mask}


def dump(client: QdrantClient) -> dict[str, np.ndarray]:
    """Every collection, point and alias of ``client`` as named arrays."""
    names = sorted(c.name for c in client.get_collections().collections)
    manifest: dict[str, Any] = {
        "format": SNAPSHOT_FORMAT,
        "aliases": {a.alias_name: a.collection_name for a in client.get_aliases().aliases},
        "collections": [],
    }
    arrays: dict[str, np.ndarray] = {}
    for index, name in enumerate(names):
        description, more = _dump_collection(client, name, f"c{index}_")
        manifest["collections"].append(description)
        arrays.update(more)
    arrays["manifest"] = _text(manifest)
    return arrays


def digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the content (names, dtypes, shapes and bytes), the same for the same store."""
    sha = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        sha.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        sha.update(array.tobytes())
    return sha.hexdigest()


def write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` and flush them to disk (the caller renames it into place)."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    with open(path, "wb") as handle:
        handle.write(buffer.getbuffer())
        handle.flush()
        os.fsync(handle.fileno())


def read(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a snapshot file (``FileNotFoundError`` when it is gone)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise KnowledgeFormatError(f"the knowledge store file {path} is unreadable: {exc}") from exc


def _points(
    description: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str
) -> list[models.PointStruct]:
    rows = _json(arrays[f"{prefix}points"])
    vectors: list[dict[str, Any]] = [{} for _ in rows]
    for index, vector in enumerate(description["dense"]):
        if f"{prefix}multi{index}_values" in arrays:
            values, indptr = arrays[f"{prefix}multi{index}_values"], arrays[f"{prefix}multi{index}_indptr"]
            for row in np.flatnonzero(arrays[f"{prefix}multi{index}_mask"]):
                vectors[row][vector] = values[int(indptr[row]) : int(indptr[row + 1])].tolist()
            continue
        matrix, mask = arrays[f"{prefix}dense{index}"], arrays[f"{prefix}dense{index}_mask"]
        for row in np.flatnonzero(mask):
            vectors[row][vector] = matrix[row].tolist()
    for index, vector in enumerate(description["sparse"]):
        indptr = arrays[f"{prefix}sparse{index}_indptr"]
        indices = arrays[f"{prefix}sparse{index}_indices"]
        values = arrays[f"{prefix}sparse{index}_values"]
        for row in np.flatnonzero(arrays[f"{prefix}sparse{index}_mask"]):
            start, end = int(indptr[row]), int(indptr[row + 1])
            vectors[row][vector] = models.SparseVector(
                indices=indices[start:end].tolist(), values=values[start:end].tolist()
            )
    return [
        models.PointStruct(id=row["id"], vector=vector, payload=row["payload"])
        for row, vector in zip(rows, vectors, strict=True)
    ]


def restore(arrays: dict[str, np.ndarray]) -> QdrantClient:
    """A fresh in-memory client holding what :func:`dump` took."""
    manifest = _json(arrays["manifest"])
    if manifest.get("format") not in READABLE_FORMATS:
        raise KnowledgeFormatError(
            f"the knowledge store has format {manifest.get('format')}; this riad-agent reads "
            f"{', '.join(map(str, READABLE_FORMATS))} (upgrade riad-agent, or delete the store and ingest again)"
        )
    client = QdrantClient(location=":memory:")
    for index, description in enumerate(manifest["collections"]):
        name = description["name"]
        client.create_collection(
            name,
            vectors_config={
                k: models.VectorParams.model_validate(v) for k, v in description["dense"].items()
            },
            sparse_vectors_config={
                k: models.SparseVectorParams.model_validate(v) for k, v in description["sparse"].items()
            },
            metadata=description["metadata"],
        )
        points = _points(description, arrays, f"c{index}_")
        for start in range(0, len(points), _UPSERT):
            client.upsert(name, points=points[start : start + _UPSERT], wait=True)
    operations: list[
        models.CreateAliasOperation | models.DeleteAliasOperation | models.RenameAliasOperation
    ] = [
        models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=target, alias_name=alias))
        for alias, target in sorted(manifest["aliases"].items())
    ]
    if operations:
        client.update_collection_aliases(change_aliases_operations=operations)
    return client


def copy(client: QdrantClient) -> QdrantClient:
    """An in-memory copy of ``client``'s content."""
    return restore(dump(client))
