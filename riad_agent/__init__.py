"""riad-agent: an explainable industrial inspector for LLM agents.

Inspect one image against a few normal references::

    from riad_agent import InspectionRequest, Inspector

    report = Inspector().inspect(
        InspectionRequest(image="part.png", category="hazelnut", references=["good1.png", "good2.png"])
    )
    print(report.verdict, report.anomaly_score, report.regions, report.explanation)

``Inspector(settings)`` takes a :class:`Settings` (default: :func:`load_settings`, from ``RIAD_*``
variables and the config file). Every mistake a caller can make raises a subclass of
:class:`RiadError` whose message says what to do. ``Inspector`` is imported on first use, so
``import riad_agent`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from riad_agent.errors import (
    BackendUnavailableError,
    BlobNotFoundError,
    BodyTooLargeError,
    ConfigurationError,
    DuplicateEntryError,
    ImageNotFoundError,
    ImageTooLargeError,
    InvalidImageError,
    InvalidRequestError,
    KnowledgeFormatError,
    KnowledgeStoreLockedError,
    ModelLoadError,
    NotReadyError,
    OutputWriteError,
    PathNotAllowedError,
    ProductExistsError,
    ProductsChangedError,
    QueueFullError,
    ReasonerTimeoutError,
    ReasoningCancelledError,
    ReferenceImageError,
    ResultsFileError,
    ResultsLockedError,
    RiadError,
    ServiceError,
    UnauthorizedError,
    UnknownCategoryError,
    UnknownProductError,
)
from riad_agent.schemas import InspectionOptions, InspectionReport, InspectionRequest, MultipleChoiceQuestion
from riad_agent.settings import Settings, load_settings

if TYPE_CHECKING:
    from riad_agent.inspector import Inspector

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "BlobNotFoundError",
    "BodyTooLargeError",
    "ConfigurationError",
    "DuplicateEntryError",
    "ImageNotFoundError",
    "ImageTooLargeError",
    "InspectionOptions",
    "InspectionReport",
    "InspectionRequest",
    "Inspector",
    "InvalidImageError",
    "InvalidRequestError",
    "KnowledgeFormatError",
    "KnowledgeStoreLockedError",
    "ModelLoadError",
    "MultipleChoiceQuestion",
    "NotReadyError",
    "OutputWriteError",
    "PathNotAllowedError",
    "ProductExistsError",
    "ProductsChangedError",
    "QueueFullError",
    "ReasonerTimeoutError",
    "ReasoningCancelledError",
    "ReferenceImageError",
    "ResultsFileError",
    "ResultsLockedError",
    "RiadError",
    "ServiceError",
    "Settings",
    "UnauthorizedError",
    "UnknownCategoryError",
    "UnknownProductError",
    "__version__",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    """Import :class:`~riad_agent.inspector.Inspector` (the graph, its libraries) on first use."""
    if name == "Inspector":
        from riad_agent.inspector import Inspector

        globals()["Inspector"] = Inspector  # found directly from now on
        return Inspector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
