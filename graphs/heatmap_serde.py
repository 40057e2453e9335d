"""A checkpoint serializer that keeps heatmap PNGs in the blob store, not in every checkpoint.

A report or expert findings with a heatmap (about 1.5 MB at 1024 px) is in the graph's state from
the expert on; every checkpoint and pending write after it would store the PNG again. Around any
saver's serializer, :class:`HeatmapOffloadingSerializer` writes the PNG once to the
content-addressed :class:`~riad_agent.blobs.BlobStore` and stores a :class:`StoredHeatmap` (the value
without its PNG, and the blob key) instead; loading puts the bytes back. A heatmap pruned from the
store since is logged and left out: the value comes back without it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol
from pydantic import BaseModel

from riad_agent.blobs import BlobStore
from riad_agent.errors import BlobNotFoundError
from riad_agent.evidence import ExpertFindings
from riad_agent.schemas import InspectionReport

logger = logging.getLogger(__name__)

#: The state's values whose ``heatmap_png`` goes to the blob store.
WITH_HEATMAP: tuple[type[BaseModel], ...] = (InspectionReport, ExpertFindings)

#: Heatmaps whose keys are remembered by identity, so that the same PNG is not hashed per checkpoint.
KEYS_REMEMBERED = 8


@dataclasses.dataclass(frozen=True)
class StoredHeatmap:
    """A value of :data:`WITH_HEATMAP` as checkpointed: ``value`` without its PNG, ``key`` its blob."""

    value: Any
    key: str


class HeatmapOffloadingSerializer:
    """``inner`` (any LangGraph serializer) with heatmap PNGs swapped for blob keys and back."""

    def __init__(self, inner: SerializerProtocol, blobs: BlobStore) -> None:
        self.inner = inner
        self.blobs = blobs
        self._keys: list[tuple[bytes, str]] = []  # (png, key), newest last
        self._lock = threading.Lock()

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        return self.inner.dumps_typed(self._offload(obj))

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        return self._restore(self.inner.loads_typed(data))

    def _offload(self, obj: Any) -> Any:
        if isinstance(obj, WITH_HEATMAP):
            png = getattr(obj, "heatmap_png", None)
            if not png:
                return obj
            return StoredHeatmap(value=obj.model_copy(update={"heatmap_png": None}), key=self._key(png))
        return _map_containers(obj, self._offload)

    def _restore(self, obj: Any) -> Any:
        if isinstance(obj, StoredHeatmap):
            try:
                png = self.blobs.get(obj.key)
            except BlobNotFoundError as exc:
                logger.warning("a checkpointed heatmap is gone, the value is restored without it: %s", exc)
                return obj.value
            return obj.value.model_copy(update={"heatmap_png": png})
        return _map_containers(obj, self._restore)

    def _key(self, png: bytes) -> str:
        with self._lock:
            for known, key in self._keys:
                if known is png and self.blobs.path(key).is_file():  # not pruned since
                    return key
        key = self.blobs.put(png)
        with self._lock:
            self._keys = [*self._keys[-(KEYS_REMEMBERED - 1) :], (png, key)]
        return key


def _map_containers(obj: Any, change: Any) -> Any:
    """``obj`` with ``change`` applied to the items of its dicts, lists and tuples (new ones only where
    an item changed); any other value as it is."""
    if type(obj) is dict:
        items = {key: change(value) for key, value in obj.items()}
        return items if any(items[key] is not obj[key] for key in obj) else obj
    if type(obj) in (list, tuple):
        changed = [change(value) for value in obj]
        if all(new is old for new, old in zip(changed, obj, strict=True)):
            return obj
        return changed if type(obj) is list else tuple(changed)
    return obj
