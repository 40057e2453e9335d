"""The parts the inspection graph calls, built from settings at the edge.

Each part is behind a protocol (``riad_agent.protocols``) and built lazily on first use, so a
graph that never needs the reasoner never loads a model. A part that cannot be built records the
:class:`RiadError` that says why; the graph turns that into a ``degraded`` flag where the method
allows (knowledge, reasoner) and into an error where it does not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from riad_agent.blobs import BlobStore
from riad_agent.errors import BackendUnavailableError, RiadError
from riad_agent.imaging import ImagePolicy
from riad_agent.protocols import Expert, KnowledgeBase, Reasoner
from riad_agent.settings import Settings

if TYPE_CHECKING:
    from riad_agent.products import ProductRegistry

T = TypeVar("T")


class Lazy(Generic[T]):
    """A value built once on first use; a build failure is re-raised as a typed error.

    A missing package is remembered for good; any other failure (a store another process holds, an
    unreachable server) for ``retry_after_s`` only, so a long-running server recovers by itself.
    """

    def __init__(self, build: Callable[[], T], name: str, retry_after_s: float = 30.0) -> None:
        self._build = build
        self._name = name
        self._retry_after_s = retry_after_s
        self._lock = threading.Lock()
        self._value: T | None = None
        self._error: RiadError | None = None
        self._failed_at: float | None = None  # None: the error is permanent

    @classmethod
    def of(cls, value: T, name: str) -> Lazy[T]:
        """An already-built value."""
        lazy = cls(lambda: value, name)
        lazy._value = value
        return lazy

    def get(self) -> T:
        """The value, building it on first call; raises the build's :class:`RiadError`."""
        with self._lock:
            if self._value is not None:
                return self._value
            if self._error is not None and (
                self._failed_at is None or time.monotonic() - self._failed_at < self._retry_after_s
            ):
                raise self._error
            try:
                self._value = self._build()
            except RiadError as exc:
                self._error, self._failed_at = exc, time.monotonic()
                raise
            except ImportError as exc:
                self._error = BackendUnavailableError(
                    f"{self._name} needs a package that is not installed: {exc.name or exc}"
                )
                self._failed_at = None
                raise self._error from exc
            self._error = None
            return self._value

    def peek(self) -> T | None:
        """The value if it is built, else None; never builds it."""
        return self._value


@dataclass
class Components:
    """Everything the inspection graph needs besides the request."""

    settings: Settings
    policy: ImagePolicy
    blobs: BlobStore
    knowledge: Lazy[KnowledgeBase]
    expert: Lazy[Expert]
    reasoner: Lazy[Reasoner]
    products: Lazy[ProductRegistry]

    def reasoner_echoes_expert(self, ask: bool = False) -> bool:
        """Whether the reasoner only repeats the expert's verdict (the builtin model, see
        :func:`riad_agent.explain.echoes_expert`), known without loading it. A reasoner service is
        judged by the model id a reply has said; with ``ask`` (a network call: only when the answer
        decides whether to run it) by its ``/readyz`` too. One that cannot say counts as one that
        judges the image itself (it runs)."""
        from riad_agent.explain import echoes_expert
        from riad_agent.serving.client import HttpReasoner

        built = self.reasoner.peek()
        if built is None and ask and self.settings.reasoner_url:
            try:
                built = self.reasoner.get()  # a client: nothing is loaded
            except RiadError:  # a bad setting: the reasoner node reports it
                return False
        if built is not None:
            if isinstance(built, HttpReasoner):
                return echoes_expert(built.ask_model_id() if ask else built.known_model_id)
            return echoes_expert(built.model_id)
        if self.settings.reasoner_url:
            return False
        return self.settings.vlm_model == "builtin" or echoes_expert(self.settings.vlm_model)


def build_components(
    settings: Settings,
    *,
    knowledge: KnowledgeBase | None = None,
    expert: Expert | None = None,
    reasoner: Reasoner | None = None,
    products: ProductRegistry | None = None,
) -> Components:
    """Components from settings; pass ready objects to override any part (tests, embedding apps)."""
    return Components(
        settings=settings,
        policy=ImagePolicy.from_settings(settings),
        blobs=BlobStore(settings.blob_dir, max_bytes=settings.blob_max_mb * 1024 * 1024),
        knowledge=Lazy.of(knowledge, "knowledge base")
        if knowledge is not None
        else Lazy(lambda: _open_knowledge(settings), "knowledge base"),
        expert=Lazy.of(expert, "vision expert")
        if expert is not None
        else Lazy(lambda: _open_expert(settings), "vision expert"),
        reasoner=Lazy.of(reasoner, "reasoner")
        if reasoner is not None
        else Lazy(lambda: _open_reasoner(settings), "reasoner"),
        products=Lazy.of(products, "product memory")
        if products is not None
        else Lazy(lambda: _open_products(settings), "product memory"),
    )


def _open_products(settings: Settings) -> ProductRegistry:
    from riad_agent.products import open_registry

    return open_registry(settings)


def _open_knowledge(settings: Settings) -> KnowledgeBase:
    from riad_agent.knowledge import open_knowledge_base

    return open_knowledge_base(settings)


def _open_expert(settings: Settings) -> Expert:
    from riad_agent.expert import open_expert

    return open_expert(settings)


def _open_reasoner(settings: Settings) -> Reasoner:
    if settings.reasoner_url:
        from riad_agent.serving.client import HttpReasoner

        return HttpReasoner(
            settings.reasoner_url, token=settings.reasoner_token, timeout_s=settings.reasoner_timeout_s
        )
    from riad_agent.models.loading import open_vlm
    from riad_agent.reasoning import LatentReasoner
    from riad_agent.reasoning.config import config_for

    vlm = open_vlm(
        settings.vlm_model,
        device=settings.device,
        dtype=settings.dtype,
        max_image_pixels=settings.max_image_pixels,
        cache_dir=settings.model_cache_dir,
        max_pixels=settings.vlm_max_pixels,
    )
    return LatentReasoner(vlm, config_for(vlm))
