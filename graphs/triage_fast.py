"""Triage's fast path: per image the expert, product recognition and exemplar typing, then the verdict
of :func:`riad_agent.explain.build_report`; no knowledge search and no latent reasoner.

With references the verdict is the calibrated expert's, so this gives the inspection graph's verdict
(reasoner off) at a fraction of its cost: references are decoded once per run, the knowledge base is
asked once per category (the canonical name and the pose the expert needs), a registered product's
stored references are read once. :class:`FastTriage` splits an image's work into :meth:`~FastTriage.decode`
(read, check, decode, resize: run it in a thread pool) and :meth:`~FastTriage.inspect` (the models;
one expert call at a time, as torch already uses every core). The record of an image is built by
:func:`triage_record`, whether its report came from here or from the whole graph.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image

from riad_agent.components import Components
from riad_agent.errors import BackendUnavailableError
from riad_agent.evidence import ExemplarTyping, ExpertFindings
from riad_agent.explain import UNCERTAIN_BAND, build_report, verdict_for
from riad_agent.graphs.images import remember_image
from riad_agent.graphs.state import ImageRef
from riad_agent.graphs.steps import (
    PRODUCT_POSE,
    CategoryResolution,
    StoredProduct,
    choose_product,
    exemplar_typing,
    near_products,
    resolve_category,
    stored_product,
)
from riad_agent.graphs.triage_results import RecordRegion, TriageRecord
from riad_agent.imaging import working_size
from riad_agent.products import ProductRegistry
from riad_agent.protocols import KnowledgeBase, Pose
from riad_agent.schemas import InspectionOptions, InspectionReport, InspectionRequest, score_text

ReasonerMode = Literal["always", "uncertain", "never"]


@dataclass(frozen=True)
class Decoded:
    """An image read, checked and decoded: the caller's path, its reference and its working copy."""

    image: str
    ref: ImageRef
    working: Image.Image


@dataclass(frozen=True)
class FastResult:
    """The fast path's report of one image and the evidence the record needs beside it."""

    report: InspectionReport
    findings: ExpertFindings | None
    typing: ExemplarTyping | None


@dataclass(frozen=True)
class _Context:
    """What an image is compared with: references, product, category, pose, and what was skipped."""

    references: list[Image.Image]
    product: str | None = None
    category: str | None = None
    pose: Pose | None = None
    pose_from: str | None = None  # PRODUCT_POSE: the registered product declared ``pose``
    guessed: bool = False
    similarity: float | None = None
    degraded: list[str] = field(default_factory=list)


class FastTriage:
    """Expert-only triage of many images that share a category and references (or a product memory)."""

    def __init__(
        self,
        components: Components,
        *,
        category: str | None = None,
        references: Sequence[str | Path] = (),
        options: InspectionOptions | None = None,
        heatmap: bool = False,
    ) -> None:
        self.components = components
        self.category = category
        self.reference_paths: list[str | bytes] = [str(path) for path in references]
        self.options = (options or InspectionOptions()).model_copy(
            update={"use_reasoner": False, "return_heatmap": heatmap}
        )
        self._expert_lock = threading.Lock()  # one expert call at a time: torch uses every core already
        self._state_lock = threading.Lock()
        self._references: list[Image.Image] | None = None
        self._products: dict[str, StoredProduct] = {}
        self._registered: list[str] | None = None
        self._resolutions: dict[tuple[str | None, Pose | None], CategoryResolution] = {}

    def decode(self, image: str) -> Decoded:
        """Read, check and decode one image (thread-safe; typed errors as the graph's ``load_inputs``)."""
        ref, working = remember_image(image, self.components.policy, self.components.blobs)
        return Decoded(image, ref, working)

    def inspect(self, decoded: Decoded) -> FastResult:
        """The report of one decoded image: expert, recognition and typing, verdict by ``build_report``."""
        start = time.perf_counter()
        context = self._context(decoded.working)
        degraded = list(context.degraded)
        findings = None
        weights = None  # the expert's prior map: which cells of the strongest box are the defect
        models: dict[str, str] = {}
        if context.references:
            expert = self.components.expert.get()
            with self._expert_lock:
                anomaly = expert.analyse(
                    decoded.working,
                    context.references,
                    pose=context.pose,
                    pose_source=context.pose_from or "knowledge",
                )
            findings = ExpertFindings.of(anomaly, self.options.return_heatmap)
            if context.product is not None:
                weights = anomaly.prior_map()
            models["expert"] = expert.backbone_id
        else:
            degraded.append("no_references")
        typing = None
        if context.product is not None and findings is not None:
            registry = self._registry()
            try:
                typing = (
                    exemplar_typing(registry, context.product, decoded.working, findings, weights)
                    if registry
                    else None
                )
            except (BackendUnavailableError, OSError):
                degraded.append("products_unavailable")
        request = InspectionRequest(
            image=decoded.image,
            category=self.category,
            references=list[str | bytes](self.reference_paths),
            options=self.options,
        )
        size = decoded.ref.size
        report = build_report(
            request=request,
            image_size=size,
            working_size=working_size(size),
            category=context.product or context.category,
            category_guessed=context.guessed,
            category_similarity=context.similarity,
            typing=typing,
            knowledge=[],
            anomaly=findings,
            reasoning=None,
            degraded=list(dict.fromkeys(degraded)),
            timings_ms={"triage_fast": round((time.perf_counter() - start) * 1000.0, 3)},
            models=models,
        )
        return FastResult(report, findings, typing)

    # ---- what an image is compared with (the graph's recall_product and resolve_category) ----------

    def _context(self, working: Image.Image) -> _Context:
        if self.reference_paths:
            resolution = self._resolution(self.category, None)
            return _Context(
                self._given_references(),
                None,
                resolution.category,
                resolution.pose,
                degraded=resolution.degraded,
            )
        registry = self._registry()
        if registry is None:
            return self._unregistered(["products_unavailable"])
        try:
            choice = choose_product(
                self._registered_names(registry), self.category, lambda: registry.recognise(working)
            )
            if choice.name is None:
                if not choice.unknown:
                    return self._unregistered(
                        [], lambda: near_products(self._registered_names(registry), self.category)
                    )
                return _Context([], similarity=choice.similarity, degraded=["unknown_product"])
            name, similarity = choice.name, choice.similarity
            product = self._stored(registry, name)
        except (BackendUnavailableError, OSError):
            return self._unregistered(["products_unavailable"])
        resolution = self._resolution(product.knowledge, product.pose)
        return _Context(
            product.images,
            product.name,
            resolution.category,
            resolution.pose,
            pose_from=PRODUCT_POSE if product.pose is not None else None,
            guessed=similarity is not None,
            similarity=similarity,
            degraded=resolution.degraded,
        )

    def _unregistered(self, degraded: list[str], near: Callable[[], Sequence[str]] = tuple) -> _Context:
        """No stored references: a named category is resolved in the knowledge; nothing to compare with.
        ``near``: registered products the name is a likely typo of (the resolution then raises)."""
        resolution = self._resolution(self.category, None, near)
        return _Context(
            [], None, resolution.category, resolution.pose, degraded=degraded + resolution.degraded
        )

    def _given_references(self) -> list[Image.Image]:
        with self._state_lock:
            if self._references is None:
                policy, blobs = self.components.policy, self.components.blobs
                self._references = [remember_image(path, policy, blobs)[1] for path in self.reference_paths]
            return self._references

    def _registry(self) -> ProductRegistry | None:
        try:
            return self.components.products.get()
        except (BackendUnavailableError, OSError):
            return None

    def _registered_names(self, registry: ProductRegistry) -> list[str]:
        with self._state_lock:
            if self._registered is None:
                self._registered = [product.name for product in registry.list()]
            return self._registered

    def _stored(self, registry: ProductRegistry, name: str) -> StoredProduct:
        with self._state_lock:
            if name not in self._products:
                policy, blobs = self.components.policy, self.components.blobs
                self._products[name] = stored_product(registry, name, policy, blobs)
            return self._products[name]

    def _resolution(
        self, category: str | None, pose: Pose | None, near: Callable[[], Sequence[str]] = tuple
    ) -> CategoryResolution:
        key = (category, pose)
        with self._state_lock:
            cached = self._resolutions.get(key)
        if cached is not None:
            return cached
        use = self.options.use_knowledge
        knowledge = self._knowledge() if use and category is not None else None
        resolution = resolve_category(knowledge, category, pose, use_knowledge=use, near=near)
        with self._state_lock:
            self._resolutions[key] = resolution
        return resolution

    def _knowledge(self) -> KnowledgeBase | None:
        try:
            return self.components.knowledge.get()
        except BackendUnavailableError:
            return None


def wants_reasoner(mode: ReasonerMode, report: InspectionReport) -> bool:
    """Whether an image goes through the whole graph with the latent reasoner after the fast path."""
    return mode == "always" or (mode == "uncertain" and report.verdict == "uncertain")


def uncertain_reason(report: InspectionReport, findings: ExpertFindings | None) -> str | None:
    """Why a verdict is ``uncertain``, in plain words (None for a firm verdict)."""
    if report.verdict != "uncertain":
        return None
    if "unknown_product" in report.degraded:
        return "the image matches no registered product and no references were given"
    if findings is None:
        return "no normal references to compare with"
    if findings.notes:
        return "the references cannot judge it: " + "; ".join(findings.notes)
    if findings.cautions and verdict_for(report.anomaly_score) == "normal":
        return "the references disagree: " + "; ".join(findings.cautions)
    return f"the score {score_text(report.anomaly_score)} is within {UNCERTAIN_BAND:.2f} of the edge of normal (0.50)"


def triage_record(
    image: str,
    path: str,
    report: InspectionReport,
    result: FastResult,
    *,
    graph: bool,
    heatmap: str | None,
    elapsed_ms: float,
) -> TriageRecord:
    """The JSONL record of one image; ``graph``: ``report`` came from the whole inspection graph."""
    typing = result.typing
    confidence = None
    if report.defect_type is not None and typing is not None and typing.defect_type == report.defect_type:
        confidence = round(typing.matches[0][1], 4)
    regions = sorted(report.regions, key=lambda region: -region.score)
    return TriageRecord(
        image=image,
        path=path,
        product=report.category,
        product_guessed=report.category_guessed,
        verdict=report.verdict,
        reason=uncertain_reason(report, result.findings),
        score=round(report.anomaly_score, 6),
        regions=[RecordRegion(box=(r.x0, r.y0, r.x1, r.y1), score=round(r.score, 6)) for r in regions],
        defect_type=report.defect_type,
        type_confidence=confidence,
        size=report.image_size,
        references=report.references,
        pose=report.pose,
        reasoner=report.trace is not None,
        report=report if graph else None,
        heatmap=heatmap,
        elapsed_ms=elapsed_ms,
    )
