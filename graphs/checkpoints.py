"""Checkpointers for the graphs: in-memory by default, SQLite or Postgres by settings.

Every checkpointer the graphs use reads the project's own types (requests, reports, findings ...)
as registered types of its serializer: no "unregistered type" warnings, and nothing else but
LangGraph's safe types is revived from a checkpoint. Given a blob store, its serializer keeps
heatmap PNGs there (:mod:`riad_agent.graphs.heatmap_serde`), so a checkpoint stays small.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.util
import typing
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from pydantic import BaseModel
from typing_extensions import is_typeddict

from riad_agent.blobs import BlobStore
from riad_agent.errors import BackendUnavailableError, ConfigurationError
from riad_agent.graphs.heatmap_serde import HeatmapOffloadingSerializer, StoredHeatmap
from riad_agent.settings import Settings


def _classes(hint: Any, seen: set[type]) -> Iterator[type]:
    """The pydantic models and dataclasses a type hint refers to, recursively through their fields."""
    if isinstance(hint, type) and (issubclass(hint, BaseModel) or dataclasses.is_dataclass(hint)):
        if hint in seen:
            return
        seen.add(hint)
        yield hint
        for field_hint in typing.get_type_hints(hint).values():
            yield from _classes(field_hint, seen)
    elif is_typeddict(hint):
        for field_hint in typing.get_type_hints(hint).values():
            yield from _classes(field_hint, seen)
    else:
        for argument in typing.get_args(hint):
            yield from _classes(argument, seen)


def project_types() -> set[tuple[str, str]]:
    """(module, name) of every type the graphs' states hold, and of their checkpointed stand-ins."""
    from riad_agent.graphs.state import InspectionState

    types = {(cls.__module__, cls.__name__) for cls in _classes(InspectionState, set())}
    return types | {(StoredHeatmap.__module__, StoredHeatmap.__name__)}


def project_serializer() -> JsonPlusSerializer:
    """LangGraph's serializer with the project's types registered (and only those besides its safe ones)."""
    return JsonPlusSerializer(allowed_msgpack_modules=sorted(project_types()))


def with_project_types(checkpointer: Any, blobs: BlobStore | None = None) -> Any:
    """The checkpointer with the project's types registered with its serializer.

    A strict allowlist is extended; LangGraph's permissive default serializer (which revives any
    type, with a warning) is replaced by :func:`project_serializer`. With ``blobs``, the serializer
    keeps heatmap PNGs in that store (:class:`HeatmapOffloadingSerializer`). A changed saver is a
    shallow copy (same connection and storage); savers with another serializer keep it.
    """
    if not isinstance(checkpointer, BaseCheckpointSaver):
        return checkpointer
    saver = checkpointer
    if isinstance(checkpointer.serde, HeatmapOffloadingSerializer):  # given twice: its inner one registered
        saver = copy.copy(checkpointer)
        saver.serde = checkpointer.serde.inner
    extended = saver.with_allowlist(project_types())
    if extended is saver and type(saver.serde) is JsonPlusSerializer:
        extended = copy.copy(saver)
        extended.serde = project_serializer()
    if blobs is None:
        return extended
    if extended is checkpointer:
        extended = copy.copy(checkpointer)
    extended.serde = HeatmapOffloadingSerializer(extended.serde, blobs)
    return extended


def checkpointer_from_settings(settings: Settings) -> Any:
    """The checkpointer named by ``settings.checkpointer`` ('memory', 'sqlite', 'postgres', 'none').

    SQLite stores under ``data_dir/checkpoints.sqlite`` unless ``checkpoint_dsn`` names a file;
    Postgres needs ``checkpoint_dsn`` (a libpq connection string). Async graphs need the async
    savers: use :func:`open_async_checkpointer` for SQLite and Postgres.
    """
    kind = settings.checkpointer
    if kind == "none":
        return None
    if kind == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        return InMemorySaver(serde=project_serializer())
    raise ConfigurationError(
        f"the {kind} checkpointer is asynchronous and needs a connection: "
        "use `async with open_async_checkpointer(settings) as saver:` and pass it to build_inspection_graph"
    )


def open_async_checkpointer(settings: Settings) -> Any:
    """An async context manager yielding the SQLite or Postgres saver named in the settings."""
    kind = settings.checkpointer
    if kind == "sqlite":
        if importlib.util.find_spec("langgraph.checkpoint.sqlite") is None:
            raise BackendUnavailableError("install riad-agent[sqlite] for the SQLite checkpointer")
        path = settings.checkpoint_dsn or str(settings.data_dir / "checkpoints.sqlite")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return _sqlite_saver(path)
    if kind == "postgres":
        if not settings.checkpoint_dsn:
            raise ConfigurationError(
                "checkpointer 'postgres' needs RIAD_CHECKPOINT_DSN (a libpq connection string)"
            )
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError as exc:
            raise BackendUnavailableError(
                "install riad-agent[postgres] for the Postgres checkpointer"
            ) from exc
        return AsyncPostgresSaver.from_conn_string(settings.checkpoint_dsn, serde=project_serializer())
    raise ConfigurationError(f"checkpointer {kind!r} needs no connection; use checkpointer_from_settings")


@contextlib.asynccontextmanager
async def _sqlite_saver(path: str) -> AsyncIterator[Any]:
    """An AsyncSqliteSaver on ``path`` with the project's serializer."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with aiosqlite.connect(path) as connection:
        yield AsyncSqliteSaver(connection, serde=project_serializer())
