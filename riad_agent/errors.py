"""Every error a user can cause is a :class:`RiadError` with a message that says what to do.

The CLI prints ``<ErrorName>: <message>`` on one line and exits with :attr:`RiadError.exit_code`;
the HTTP and MCP surfaces map :attr:`RiadError.code` to their own error payloads.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError


def first_problem(exc: ValidationError, whole: str = "body") -> tuple[str, str]:
    """Where (dotted field path, or ``whole``) and what of the first error pydantic found."""
    first = exc.errors()[0]
    return ".".join(str(part) for part in first["loc"]) or whole, str(first["msg"])


class RiadError(Exception):
    """Base class of every error riad-agent raises on purpose."""

    code: str = "riad_error"
    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def one_line(self) -> str:
        """``Name: message`` on a single line, as the CLI prints it."""
        text = " ".join(self.message.split())
        return f"{type(self).__name__}: {text}"


class InvalidRequestError(RiadError):
    """A request or argument does not satisfy the contract (wrong type, bad value)."""

    code = "invalid_request"


class InvalidImageError(RiadError):
    """The image cannot be used: not an image, corrupt, empty, wrong mode or shape."""

    code = "invalid_image"


class ImageNotFoundError(InvalidImageError):
    """An image path does not exist or is not a regular file."""

    code = "image_not_found"


class ImageTooLargeError(InvalidImageError):
    """The image exceeds the configured byte or pixel budget (decompression bombs included)."""

    code = "image_too_large"


class PathNotAllowedError(RiadError):
    """A file path lies outside the configured allowed roots, or a URL was given while URLs are off."""

    code = "path_not_allowed"


class UnknownCategoryError(RiadError):
    """The category is not in the knowledge base, or is ambiguous (the message lists close matches).

    ``close_matches`` holds the known categories the name is a likely typo of (for an ambiguous
    short name: the categories it could mean); empty when the name is close to none (a new product,
    which callers may inspect without knowledge) or the base is empty. The policy lives in
    ``riad_agent.knowledge.categories``.
    """

    code = "unknown_category"

    def __init__(self, message: str, close_matches: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.close_matches = list(close_matches)


class ReferenceImageError(InvalidImageError):
    """Normal reference images are missing or inconsistent with each other or the query."""

    code = "invalid_references"


class KnowledgeFormatError(RiadError):
    """A knowledge file is malformed (the message names the file and the field)."""

    code = "knowledge_format"


class DuplicateEntryError(KnowledgeFormatError):
    """Two knowledge entries share one id."""

    code = "duplicate_entry"


class BackendUnavailableError(RiadError):
    """A service the request needs (Qdrant, the reasoner, a database) cannot be reached."""

    code = "backend_unavailable"
    exit_code = 3


class ReasonerTimeoutError(BackendUnavailableError):
    """The reasoner did not answer within the configured timeout."""

    code = "reasoner_timeout"


class ModelLoadError(RiadError):
    """A model or its weights could not be loaded (wrong id, missing files, unsupported type)."""

    code = "model_load"


class ConfigurationError(RiadError):
    """Settings are inconsistent or a configuration file is malformed."""

    code = "configuration"


class OutputWriteError(RiadError):
    """Results could not be written (disk full, permissions); what was already written is kept."""

    code = "output_write"


class BlobNotFoundError(RiadError):
    """A stored image or array of an inspection is gone (pruned by the size limit, or another data dir)."""

    code = "blob_not_found"


# -- the reasoner service's own refusals (riad_agent.serving) ------------------------------------


class ServiceError(RiadError):
    """Base class of the reasoner service's own refusals (queue, token, readiness, body size)."""

    code = "service_error"


class QueueFullError(ServiceError):
    """The service's request queue is full (HTTP 429); retry after the advertised delay."""

    code = "queue_full"
    exit_code = 3


class UnauthorizedError(ServiceError):
    """The bearer token is missing or wrong (HTTP 401)."""

    code = "unauthorized"


class NotReadyError(ServiceError):
    """The model is still loading or failed to load (HTTP 503)."""

    code = "not_ready"
    exit_code = 3


class BodyTooLargeError(ServiceError):
    """The request body exceeds the service's byte limit (HTTP 413)."""

    code = "body_too_large"


# -- batch triage's results file (riad_agent.graphs.triage_results) ------------------------------


class ResultsFileError(RiadError):
    """An existing triage results file holds something other than triage records; it is left untouched."""

    code = "results_file"


class ResultsLockedError(RiadError):
    """Another triage run is writing to the same results file; wait for it or choose another output."""

    code = "results_locked"
    exit_code = 3


# -- cooperative cancellation of the latent reasoner (riad_agent.reasoning.cancel) ----------------


class ReasoningCancelledError(RiadError):
    """The reasoner stopped a request because its caller gave up (timeout, disconnect, shutdown)."""

    code = "reasoning_cancelled"
    exit_code = 3


class KnowledgeStoreLockedError(BackendUnavailableError):
    """Another process kept writing the embedded knowledge store past the lock timeout."""

    code = "knowledge_store_locked"


# -- product memory (riad_agent.products) ---------------------------------------------------------


class UnknownProductError(RiadError):
    """No product of that name is registered (the message lists the registered ones)."""

    code = "unknown_product"


class ProductExistsError(RiadError):
    """A product of that name is already registered; extend it, or remove it first."""

    code = "product_exists"


class ProductsChangedError(RiadError):
    """The product memory changed during an operation over all of it (another process wrote); run it again."""

    code = "products_changed"
