"""The reasoner service's HTTP contract: pydantic bodies, limits and the converters on both sides.

A :class:`~riad_agent.protocols.ReasoningInput` travels as a :class:`WireRequest`: images as
base64 PNG, the knowledge hits and question as their schema models, the expert's prior as a small
float grid (block-averaged to at most :data:`PRIOR_MAX_SIDE` cells a side; the reasoner pools it to
its own patch grid anyway). The answer comes back as a :class:`WireResponse`; errors as a
:class:`WireError` whose ``code`` is a :class:`~riad_agent.errors.RiadError` code.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from riad_agent import imaging
from riad_agent.errors import (
    InvalidImageError,
    InvalidRequestError,
    ReasonerTimeoutError,
    ReasoningCancelledError,
    RiadError,
)
from riad_agent.protocols import ExemplarHint, ReasoningInput, ReasoningResult
from riad_agent.schemas import KnowledgeHit, MultipleChoiceQuestion, ReasoningTrace

API_VERSION = "1"
#: The prior grid is block-averaged to at most this many cells on its longer side before sending.
PRIOR_MAX_SIDE = 64
#: Header carrying the id of the replica that answered (also in :attr:`WireResponse.replica`).
REPLICA_HEADER = "X-Riad-Replica"
#: Why a request with the expert's image score but not its prior map is refused (the score is
#: read alongside the map, so alone it would be silently ignored).
SCORE_WITHOUT_PRIOR = "image_score needs patch_prior: send the expert's prior map with its score, or neither"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WireExemplar(_Wire):
    """One registered defect exemplar's verdict on the strongest region (``ExemplarHint``)."""

    defect_type: str = Field(min_length=1, max_length=200)
    similarity: float = Field(ge=-1.0, le=1.0)
    crop: str | None = Field(default=None, description="The exemplar's region, base64 PNG.")


class WireRequest(_Wire):
    """Body of ``POST /v1/reason``."""

    api_version: str = API_VERSION
    image: str = Field(min_length=1, description="The query image, base64 PNG.")
    templates: list[str] = Field(
        default_factory=list, max_length=16, description="Normal templates, base64 PNG."
    )
    question: MultipleChoiceQuestion
    knowledge: list[KnowledgeHit] = Field(default_factory=list, max_length=64)
    patch_prior: list[list[float]] | None = Field(
        default=None, max_length=PRIOR_MAX_SIDE, description="[0, 1] prior grid, rows of floats."
    )
    image_score: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="The expert's calibrated image score (0.5 = edge of normal).",
    )
    settled_score: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="The expert's score when its verdict stands on its own; an answer may not contradict "
        "it where it is confident.",
    )
    category: str | None = Field(default=None, max_length=200)
    latent_steps: int = Field(default=10, ge=0, le=200)
    latent_tokens: int = Field(default=4, ge=1, le=64)
    inject_patches: bool = True
    seed: int = Field(default=0, ge=0)
    exemplars: list[WireExemplar] = Field(
        default_factory=list, max_length=16, description="Labelled exemplars, most similar first."
    )
    exemplar_type: str | None = Field(
        default=None, max_length=200, description="The type the exemplars clearly point to, if any."
    )

    @model_validator(mode="after")
    def _score_needs_prior(self) -> WireRequest:
        if self.image_score is not None and self.patch_prior is None:
            raise ValueError(SCORE_WITHOUT_PRIOR)
        return self

    @field_validator("patch_prior")
    @classmethod
    def _rectangular(cls, grid: list[list[float]] | None) -> list[list[float]] | None:
        if grid is None:
            return None
        if not grid or not grid[0]:
            raise ValueError("patch_prior must be a non-empty grid")
        width = len(grid[0])
        if width > PRIOR_MAX_SIDE:
            raise ValueError(f"patch_prior rows must have at most {PRIOR_MAX_SIDE} values")
        if any(len(row) != width for row in grid):
            raise ValueError("patch_prior rows must all have the same length")
        largest = float(np.finfo(np.float32).max)  # the service reads the grid as float32
        if not all(np.isfinite(value) and abs(value) <= largest for row in grid for value in row):
            raise ValueError(
                "patch_prior values must be finite numbers within float32's range (a prior is in [0, 1])"
            )
        return grid


class WireResponse(_Wire):
    """Body of a successful ``POST /v1/reason``."""

    api_version: str = API_VERSION
    answer: str | None
    text: str
    trace: ReasoningTrace
    timings_ms: dict[str, float] = Field(default_factory=dict)
    model_id: str
    replica: str = ""


class WireErrorBody(_Wire):
    """What went wrong: a :class:`~riad_agent.errors.RiadError` code and a message saying what to do."""

    code: str
    message: str


class WireError(_Wire):
    """Body of every non-2xx answer."""

    error: WireErrorBody


class Health(_Wire):
    """Body of ``GET /healthz`` and ``GET /readyz``."""

    status: str
    ready: bool
    model_id: str | None = None
    precision: str | None = Field(
        default=None, description="The model's precision: float32, bfloat16 or int8."
    )
    replica: str = ""
    queued: int = 0
    running: int = Field(default=0, description="Requests in the model worker's running batch.")
    max_queue: int = 0
    completed: int = Field(default=0, description="Requests the model worker has finished.")
    cancelled: int = Field(default=0, description="Requests stopped because their caller gave up.")
    refused: int = Field(default=0, description="Requests refused with 429 because the queue was full.")
    detail: str = ""


@dataclass(frozen=True)
class WireLimits:
    """Size limits the service enforces before decoding anything."""

    max_body_bytes: int = 32 * 1024 * 1024
    max_image_pixels: int = 16_000_000


#: HTTP status of each error code the service sends.
STATUS_FOR_CODE: dict[str, int] = {
    "invalid_request": 422,
    "invalid_image": 422,
    "invalid_references": 422,
    "image_too_large": 413,
    "body_too_large": 413,
    "unauthorized": 401,
    "queue_full": 429,
    "not_ready": 503,
    "backend_unavailable": 503,
    ReasoningCancelledError.code: 503,
    ReasonerTimeoutError.code: 504,
}


def status_for(error: RiadError) -> int:
    """The HTTP status for a typed error (500 for codes without a mapping)."""
    return STATUS_FOR_CODE.get(error.code, 500)


def error_body(error: RiadError) -> dict[str, object]:
    """The JSON body of a :class:`WireError` for a typed error."""
    return WireError(error=WireErrorBody(code=error.code, message=error.message)).model_dump()


# --- images -------------------------------------------------------------------------------------


def encode_png(image: Image.Image) -> str:
    """An RGB image as a base64 PNG string (fast compression: it crosses a network once)."""
    return base64.b64encode(imaging.encode_png(image.convert("RGB"), compress_level=1)).decode("ascii")


def decode_png(text: str, what: str, max_pixels: int) -> Image.Image:
    """A base64 PNG back to RGB within a pixel budget; typed errors for anything else."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImageError(f"{what} is not valid base64: {exc}") from exc
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise InvalidImageError(f"{what} must be a base64 PNG")
    image, _, _ = imaging.decode_image(data, what, imaging.ImagePolicy(max_pixels=max_pixels))
    return image


# --- prior grid ---------------------------------------------------------------------------------


def shrink_prior(prior: np.ndarray, max_side: int = PRIOR_MAX_SIDE) -> np.ndarray:
    """Block-average a 2-D prior so that neither side exceeds ``max_side`` (values kept in [0, 1])."""
    values = np.asarray(prior, dtype=np.float32)
    if values.ndim != 2 or values.size == 0:
        raise InvalidRequestError(f"patch prior must be a non-empty 2-D grid, got shape {values.shape}")
    rows, cols = values.shape
    if rows > max_side or cols > max_side:
        values = imaging.pool_to_grid(values, min(rows, max_side), min(cols, max_side))
    return np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0).astype(np.float32)


# --- converters ---------------------------------------------------------------------------------


def encode_input(request: ReasoningInput) -> WireRequest:
    """Client side: a reasoning input as the request body (InvalidRequestError for a score without a prior)."""
    if request.image_score is not None and request.patch_prior is None:
        raise InvalidRequestError(SCORE_WITHOUT_PRIOR)
    prior = None
    if request.patch_prior is not None:
        prior = [[round(float(v), 5) for v in row] for row in shrink_prior(request.patch_prior)]
    return WireRequest(
        image=encode_png(request.image),
        templates=[encode_png(template) for template in request.templates],
        question=request.question,
        knowledge=list(request.knowledge),
        patch_prior=prior,
        image_score=None if request.image_score is None else float(request.image_score),
        settled_score=None if request.settled_score is None else float(request.settled_score),
        category=request.category,
        latent_steps=request.latent_steps,
        latent_tokens=request.latent_tokens,
        inject_patches=request.inject_patches,
        seed=request.seed,
        exemplars=[
            WireExemplar(
                defect_type=hint.defect_type,
                similarity=float(hint.similarity),
                crop=None if hint.crop is None else encode_png(hint.crop),
            )
            for hint in request.exemplars
        ],
        exemplar_type=request.exemplar_type,
    )


def decode_input(body: WireRequest, limits: WireLimits) -> ReasoningInput:
    """Service side: the request body as a reasoning input (typed errors for bad images)."""
    if body.api_version != API_VERSION:
        raise InvalidRequestError(
            f"api_version {body.api_version!r} is not supported; this service speaks {API_VERSION!r}"
        )
    image = decode_png(body.image, "image", limits.max_image_pixels)
    templates = [
        decode_png(text, f"templates[{index}]", limits.max_image_pixels)
        for index, text in enumerate(body.templates)
    ]
    prior = None if body.patch_prior is None else np.asarray(body.patch_prior, dtype=np.float32)
    return ReasoningInput(
        image=image,
        question=body.question,
        knowledge=list(body.knowledge),
        templates=templates,
        patch_prior=prior,
        image_score=body.image_score,
        settled_score=body.settled_score,
        category=body.category,
        latent_steps=body.latent_steps,
        latent_tokens=body.latent_tokens,
        inject_patches=body.inject_patches,
        seed=body.seed,
        exemplars=[
            ExemplarHint(
                defect_type=hint.defect_type,
                similarity=hint.similarity,
                crop=None
                if hint.crop is None
                else decode_png(hint.crop, f"exemplars[{index}].crop", limits.max_image_pixels),
            )
            for index, hint in enumerate(body.exemplars)
        ],
        exemplar_type=body.exemplar_type,
    )


def encode_result(result: ReasoningResult, model_id: str, replica: str = "") -> WireResponse:
    """Service side: a reasoning result as the response body."""
    return WireResponse(
        answer=result.answer,
        text=result.text,
        trace=result.trace,
        timings_ms=dict(result.timings_ms),
        model_id=model_id,
        replica=replica,
    )


def decode_result(body: WireResponse) -> ReasoningResult:
    """Client side: the response body as a reasoning result."""
    return ReasoningResult(
        answer=body.answer, text=body.text, trace=body.trace, timings_ms=dict(body.timings_ms)
    )
