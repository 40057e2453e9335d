"""The inspection graph's state: small, serialisable values only, so that a checkpoint is small.

Images are in the state by reference (:class:`ImageRef`: the caller's file or a blob, and the
SHA-256 of its bytes) and the expert's arrays stay out of it: the report needs only its
:class:`~riad_agent.evidence.ExpertFindings`, and the reasoner's prior map is a blob key.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypedDict  # pydantic builds JSON schemas of typing_extensions' TypedDict only

from riad_agent.evidence import ExemplarTyping, ExpertFindings
from riad_agent.protocols import Pose, ReasoningResult
from riad_agent.schemas import CandidateType, InspectionReport, InspectionRequest, KnowledgeHit


def _merge(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    return {**(left or {}), **(right or {})}


class ImageRef(BaseModel):
    """One image of an inspection by content: ``path`` is the caller's file, or None when the bytes are
    in the blob store under ``sha256``; ``size`` is its original (width, height)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None
    sha256: str
    size: tuple[int, int]


class InspectionInput(BaseModel):
    """What a caller sends: ``{"request": {...}}`` (JSON is validated into an InspectionRequest)."""

    model_config = ConfigDict(extra="forbid")

    request: InspectionRequest


class InspectionOutput(TypedDict):
    """What a caller gets back: the report."""

    report: InspectionReport


class InspectionState(TypedDict, total=False):
    """What the nodes read and write."""

    request: InspectionRequest
    image: ImageRef
    references: list[ImageRef]
    category: str | None
    category_guessed: bool
    category_similarity: float | None  # a product recognised from the image: how close it was
    product: str | None  # the registered product whose stored references are used
    pose: Pose | None  # the product's or the category's knowledge pose, None: the expert infers it
    pose_from: (
        str | None
    )  # who declared ``pose`` when not its knowledge (steps.PRODUCT_POSE): the expert's pose_source
    search_knowledge: bool
    knowledge: list[KnowledgeHit]
    # the category's defect entries, best cue match to the strongest region first
    candidates: list[CandidateType]
    anomaly: ExpertFindings | None
    reasoner_echoes: bool  # the reasoner only repeats the expert's verdict: not run for an unclear one
    typing: ExemplarTyping | None  # the registered product's labelled exemplars against the strongest region
    prior: str | None  # blob key of the reasoner's prior map (AnomalyMap.prior_map), None without one
    needs_review: bool
    reasoning: ReasoningResult | None
    review: dict[str, Any] | None
    degraded: Annotated[list[str], operator.add]
    timings_ms: Annotated[dict[str, float], _merge]
    models: Annotated[dict[str, str], _merge]
    report: InspectionReport
