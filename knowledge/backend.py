"""Connecting to Qdrant: the embedded store or a server, with transport errors turned into typed ones."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from qdrant_client import QdrantClient

from riad_agent.errors import BackendUnavailableError
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


def connect(settings: Settings) -> QdrantClient:
    """A Qdrant client: the server at ``qdrant_url`` or the embedded store under ``qdrant_path``."""
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
        return client
    path = Path(settings.qdrant_path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        return QdrantClient(path=str(path))
    except RuntimeError as exc:
        if "already accessed" in str(exc):
            raise BackendUnavailableError(
                f"the local knowledge store {path} is in use by another process; close it, or run a Qdrant "
                "server and set QDRANT_URL for concurrent access"
            ) from exc
        raise
    except OSError as exc:
        raise BackendUnavailableError(f"cannot open the local knowledge store {path}: {exc}") from exc
