"""Checkpointers for the graphs: in-memory by default, SQLite or Postgres by settings."""

from __future__ import annotations

from typing import Any

from riad_agent.errors import BackendUnavailableError, ConfigurationError
from riad_agent.settings import Settings


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

        return InMemorySaver()
    raise ConfigurationError(
        f"the {kind} checkpointer is asynchronous and needs a connection: "
        "use `async with open_async_checkpointer(settings) as saver:` and pass it to build_inspection_graph"
    )


def open_async_checkpointer(settings: Settings) -> Any:
    """An async context manager yielding the SQLite or Postgres saver named in the settings."""
    kind = settings.checkpointer
    if kind == "sqlite":
        try:
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
        except ImportError as exc:
            raise BackendUnavailableError("install riad-agent[sqlite] for the SQLite checkpointer") from exc
        path = settings.checkpoint_dsn or str(settings.data_dir / "checkpoints.sqlite")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return AsyncSqliteSaver.from_conn_string(path)
    if kind == "postgres":
        if not settings.checkpoint_dsn:
            raise ConfigurationError("checkpointer 'postgres' needs RIAD_CHECKPOINT_DSN (a libpq connection string)")
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError as exc:
            raise BackendUnavailableError("install riad-agent[postgres] for the Postgres checkpointer") from exc
        return AsyncPostgresSaver.from_conn_string(settings.checkpoint_dsn)
    raise ConfigurationError(f"checkpointer {kind!r} needs no connection; use checkpointer_from_settings")
