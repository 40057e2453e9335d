"""Connecting to Qdrant: a server or the embedded store, with transport errors turned into typed ones."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from qdrant_client import QdrantClient

from riad_agent.errors import BackendUnavailableError
from riad_agent.knowledge.local_store import LocalStore
from riad_agent.settings import Settings


def is_local(client: QdrantClient) -> bool:
    """Whether the client runs the embedded (in-process) Qdrant."""
    return type(getattr(client, "_client", None)).__name__ == "QdrantLocal"


@contextlib.contextmanager
def backend_errors(what: str) -> Iterator[None]:
    """Turn transport errors of the Qdrant client into :class:`BackendUnavailableError`."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    try:
        yield
    except UnexpectedResponse as exc:
        hint = " (check QDRANT_API_KEY)" if exc.status_code in (401, 403) else ""
        raise BackendUnavailableError(f"Qdrant refused {what}: HTTP {exc.status_code}{hint}") from exc
    except (ResponseHandlingException, ConnectionError, TimeoutError) as exc:
        raise BackendUnavailableError(f"Qdrant is unreachable while {what}: {exc}") from exc
    except Exception as exc:  # httpx / grpc errors, imported lazily by the client
        module = type(exc).__module__
        if module.startswith(("httpx", "httpcore", "grpc")):
            raise BackendUnavailableError(f"Qdrant is unreachable while {what}: {exc}") from exc
        raise


class ClientSource(Protocol):
    """Where a knowledge collection gets its Qdrant client: fixed, or refreshed from the shared store."""

    local: bool

    def current(self) -> tuple[QdrantClient, str]:
        """The client to read from and a token that changes whenever its content may have changed."""
        ...

    def transaction(self) -> AbstractContextManager[QdrantClient]:
        """A client to write to; what is written is visible to readers when the block ends without error."""
        ...

    def close(self) -> None:
        """Release what the source holds."""
        ...


class FixedClient:
    """One client for reads and writes: a Qdrant server, or a client the caller built (writes land at once)."""

    def __init__(self, client: QdrantClient) -> None:
        self.client = client
        self.local = is_local(client)

    def current(self) -> tuple[QdrantClient, str]:
        return self.client, ""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[QdrantClient]:
        yield self.client

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


def connect(settings: Settings) -> ClientSource:
    """The server at ``qdrant_url``, or the embedded store under ``qdrant_path`` shared by processes."""
    if settings.qdrant_url:
        timeout = max(1, round(settings.qdrant_timeout_s))
        with backend_errors(f"connecting to {settings.qdrant_url}"):
            client = QdrantClient(
                url=settings.qdrant_url,
                api_key=settings.qdrant_api_key,
                timeout=timeout,
                check_compatibility=False,
            )
            client.get_collections()
        return FixedClient(client)
    return LocalStore(Path(settings.qdrant_path), lock_timeout_s=settings.knowledge_lock_timeout_s)
