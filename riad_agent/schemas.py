"""The contracts at every boundary: what goes into an inspection and what comes out.

``InspectionRequest`` and ``InspectionReport`` are what the graph, the tools, the CLI and the HTTP
services exchange. The smaller models (``Region``, ``KnowledgeCitation``, ``ReasoningTrace`` ...) are
their parts and are also what the components return.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from riad_agent.errors import InvalidRequestError, first_problem

SCHEMA_VERSION = "1"

Verdict = Literal["normal", "anomalous", "uncertain"]
ImageSource = Annotated[
    str | bytes,
    Field(
        description=(
            "The image: a file path, raw bytes, a base64 string or a data URI "
            "('data:image/png;base64,...'). URLs are refused unless the server enables them."
        )
    ),
]

#: What each ``degraded`` entry of a report means for the reader (unknown entries are shown as they are).
DEGRADED_MEANINGS: dict[str, str] = {
    "knowledge_unavailable": "the knowledge base could not be reached: no knowledge was used or cited",
    "no_knowledge_for_category": "the knowledge base knows nothing of this category: no knowledge was used",
    "no_references": "no normal reference images: no calibrated comparison, the verdict stays uncertain",
    "reasoner_unavailable": "the reasoner could not be built or reached: an expert-only report",
    "reasoner_timeout": "the reasoner did not answer in time: an expert-only report",
}

_LETTER = re.compile(r"^[A-Z]$")
_CATEGORY = re.compile(r"^[a-z0-9][a-z0-9_\-]*(/[a-z0-9][a-z0-9_\-]*)?$")


def _path_to_str(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")


class MultipleChoiceQuestion(_Strict):
    """A question with lettered options, as in MMAD: ``{"A": "Yes.", "B": "No."}``."""

    text: str = Field(min_length=1, max_length=4000, description="The question itself.")
    options: dict[str, str] = Field(
        description="Options keyed by capital letter, in order: {'A': '...', 'B': '...'}."
    )

    @field_validator("options")
    @classmethod
    def _lettered(cls, options: dict[str, str]) -> dict[str, str]:
        if not 2 <= len(options) <= 26:
            raise ValueError("a question needs between 2 and 26 options")
        letters = list(options)
        for letter in letters:
            if not _LETTER.match(letter):
                raise ValueError(f"option key {letter!r} is not a single capital letter A-Z")
        expected = [chr(ord("A") + i) for i in range(len(letters))]
        if sorted(letters) != expected:
            raise ValueError(f"option letters must be {', '.join(expected)} (got {', '.join(letters)})")
        for letter, text in options.items():
            if not text.strip():
                raise ValueError(f"option {letter} is empty")
        return {letter: options[letter] for letter in expected}

    def render(self) -> str:
        """The question and its options as prompt text, one option per line."""
        lines = [self.text.strip()]
        lines += [f"{letter}. {text.strip()}" for letter, text in self.options.items()]
        return "\n".join(lines)


class InspectionOptions(_Strict):
    """Knobs of one inspection; the defaults are the method's."""

    latent_steps: int = Field(default=10, ge=0, le=200, description="Latent optimisation iterations T.")
    latent_tokens: int = Field(default=4, ge=1, le=64, description="Number of latent think tokens L.")
    inject_patches: bool = Field(default=True, description="Dynamic visual injection on or off.")
    use_knowledge: bool = Field(default=True, description="Retrieve category knowledge into the prompt.")
    use_reasoner: bool = Field(default=True, description="Run the latent reasoner; off = expert only.")
    knowledge_k: int = Field(default=4, ge=1, le=32, description="Knowledge entries to retrieve.")
    seed: int = Field(default=0, ge=0, description="Seed for every random choice: same seed, same report.")
    return_heatmap: bool = Field(default=False, description="Include the heatmap overlay PNG.")


class InspectionRequest(_Strict):
    """One image to inspect, with what is known about it."""

    image: ImageSource
    category: str | None = Field(
        default=None,
        description="Product category, e.g. 'hazelnut' or 'mvtec/hazelnut'. Guessed when absent.",
    )
    references: list[ImageSource] = Field(
        default_factory=list,
        max_length=200,
        description="Normal reference images of the same category (few-shot templates).",
    )
    question: MultipleChoiceQuestion | None = Field(
        default=None, description="Optional multiple-choice question to answer about the image."
    )
    options: InspectionOptions = Field(default_factory=InspectionOptions)

    @field_validator("image", mode="before")
    @classmethod
    def _image_path(cls, value: Any) -> Any:
        return _path_to_str(value)

    @field_validator("references", mode="before")
    @classmethod
    def _reference_paths(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [_path_to_str(item) for item in value]
        return value

    @field_validator("category")
    @classmethod
    def _category_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not value:
            return None
        if not _CATEGORY.match(value):
            raise ValueError(
                f"category {value!r} must look like 'hazelnut' or 'mvtec/hazelnut' "
                "(lower-case letters, digits, '_' and '-')"
            )
        return value

    @model_validator(mode="after")
    def _image_not_empty(self) -> InspectionRequest:
        if len(self.image) == 0:
            raise ValueError("image is empty")
        return self


ModelT = TypeVar("ModelT", bound=BaseModel)


def validated(model: type[ModelT], value: ModelT | dict[str, Any], what: str) -> ModelT:
    """``value`` as a ``model`` (a dict, e.g. JSON, is validated); typed error naming the first bad field."""
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        where, problem = first_problem(exc, what)
        raise InvalidRequestError(f"invalid {what} field {where}: {problem}") from exc


def parse_request(value: InspectionRequest | dict[str, Any]) -> InspectionRequest:
    """Validate a request given as a dict (JSON); typed error naming the first bad field."""
    return validated(InspectionRequest, value, "request")


class Region(_Strict):
    """An anomalous region as a pixel box ``[x0, y0, x1, y1)`` in the original image."""

    x0: int = Field(ge=0)
    y0: int = Field(ge=0)
    x1: int = Field(ge=0)
    y1: int = Field(ge=0)
    score: float = Field(ge=0.0, le=1.0, description="Calibrated score of the region's peak.")
    area: int = Field(ge=0, description="Pixels above threshold inside the box.")

    @model_validator(mode="after")
    def _ordered(self) -> Region:
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            raise ValueError("a region needs x1 > x0 and y1 > y0")
        return self


class KnowledgeHit(_Strict):
    """One knowledge entry found by retrieval, with its score (higher is closer)."""

    id: str = Field(description="Entry id, e.g. 'mvtec/hazelnut/crack'.")
    score: float
    dataset: str
    category: str = Field(description="Full category name, 'dataset/category'.")
    kind: Literal["normal", "defect"]
    defect_type: str | None = None
    title: str
    text: str
    source: str = ""


class KnowledgeCitation(_Strict):
    """A knowledge entry the report relied on, for citation."""

    id: str
    title: str
    category: str
    kind: Literal["normal", "defect"]
    defect_type: str | None = None
    score: float


class PatchRef(_Strict):
    """A query-image patch injected into the reasoning, with its grid cell and pixel box."""

    index: int = Field(ge=0)
    row: int = Field(ge=0)
    col: int = Field(ge=0)
    box: tuple[int, int, int, int]
    score: float


class IterationTrace(_Strict):
    """One iteration of the latent loop."""

    step: int = Field(ge=0)
    reward: float
    entropy: float
    sigma: float = Field(ge=0.0)
    injected: list[PatchRef] = Field(default_factory=list)
    accepted: bool = Field(description="Whether this iteration's injection candidate was kept.")
    elapsed_ms: float = Field(ge=0.0)


class ReasoningTrace(_Strict):
    """What the latent reasoner did: rewards per iteration and the patches it kept."""

    model_id: str
    reward_kind: str
    latent_tokens: int
    initial_reward: float
    final_reward: float
    iterations: list[IterationTrace] = Field(default_factory=list)
    injected: list[PatchRef] = Field(default_factory=list, description="Patches used in the decode.")
    option_probabilities: dict[str, float] = Field(default_factory=dict)
    rationale: str = ""


class InspectionReport(_Strict):
    """The explainable verdict on one image."""

    schema_version: str = SCHEMA_VERSION
    verdict: Verdict
    anomaly_score: float = Field(
        ge=0.0, le=1.0, description="Calibrated: 0.5 is the edge of normal for every category."
    )
    category: str | None = None
    category_guessed: bool = False
    answer: str | None = Field(default=None, description="Answer letter when a question was asked.")
    answer_text: str | None = None
    defect_type: str | None = None
    defect_description: str | None = None
    regions: list[Region] = Field(default_factory=list)
    heatmap_png: bytes | None = Field(default=None, description="Heatmap overlay (base64 in JSON).")
    explanation: str = ""
    knowledge: list[KnowledgeCitation] = Field(default_factory=list)
    trace: ReasoningTrace | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict)
    degraded: list[str] = Field(
        default_factory=list,
        description="Why parts were skipped, e.g. 'reasoner_unavailable', 'no_references'.",
    )
    image_size: tuple[int, int] = Field(description="(width, height) of the inspected image.")

    @field_validator("answer")
    @classmethod
    def _answer_letter(cls, value: str | None) -> str | None:
        if value is not None and not _LETTER.match(value):
            raise ValueError("answer must be one capital letter")
        return value

    def summary(self) -> str:
        """One line for humans and chat models: verdict, score, defect and where."""
        parts = [f"{self.verdict} (anomaly score {self.anomaly_score:.2f})"]
        if self.category:
            parts.insert(0, f"[{self.category}]")
        if self.defect_type:
            parts.append(f"defect: {self.defect_type}")
        if self.regions:
            top = max(self.regions, key=lambda r: r.score)
            parts.append(f"at x={top.x0}-{top.x1}, y={top.y0}-{top.y1}")
        if self.answer:
            parts.append(f"answer: {self.answer}")
        if self.degraded:
            parts.append(f"degraded: {', '.join(self.degraded)}")
        return "; ".join(parts)

    def degradation_notes(self) -> list[str]:
        """One line per ``degraded`` entry, each saying what was skipped and what that means."""
        return [
            f"degraded: {entry}: {DEGRADED_MEANINGS.get(entry, 'part of the inspection was skipped')}"
            for entry in self.degraded
        ]
