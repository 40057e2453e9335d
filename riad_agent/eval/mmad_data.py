"""Reading MMAD as published: ``mmad.json`` keyed by image path (relative to the data root).

Each value holds ``conversation`` (questions with ``Question``, ``Options``, ``Answer``, ``type``),
``similar_templates`` and ``random_templates`` (normal images of the same product) and ``mask_path``.
The source dataset is the first path component of the key, the product the second.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from riad_agent.errors import InvalidRequestError, first_problem
from riad_agent.schemas import MultipleChoiceQuestion

SUBTASKS: tuple[str, ...] = (
    "Anomaly Detection",
    "Defect Classification",
    "Defect Localization",
    "Defect Description",
    "Defect Analysis",
    "Object Classification",
    "Object Analysis",
)
"""MMAD's seven subtasks, in the column order of its published result files."""

TYPE_ALIASES = {"Object Structure": "Object Analysis", "Object Details": "Object Analysis"}
"""Older question types that MMAD's scorer folds into 'Object Analysis'."""

NORMAL_FLAG = "good"
"""MMAD decides normal vs anomalous by this substring of the image path."""


class MmadQuestion(BaseModel):
    """One multiple-choice question of an MMAD conversation (field names as published)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    question: str = Field(alias="Question")
    options: dict[str, str] = Field(alias="Options")
    answer: str = Field(alias="Answer")
    type: str

    def to_choice(self) -> MultipleChoiceQuestion:
        """The question as the reasoner's :class:`MultipleChoiceQuestion`."""
        return MultipleChoiceQuestion(text=self.question, options=self.options)


class MmadItem(BaseModel):
    """One image of MMAD with its questions and normal templates."""

    model_config = ConfigDict(extra="allow")

    conversation: list[MmadQuestion]
    similar_templates: list[str] = Field(default_factory=list)
    random_templates: list[str] = Field(default_factory=list)
    mask_path: str | None = None


def normalise_type(question_type: str) -> str:
    """MMAD's subtask for a question type ('Object Details' -> 'Object Analysis')."""
    return TYPE_ALIASES.get(question_type, question_type)


def dataset_of(image: str) -> str:
    """The source dataset: the first path component ('MVTec-AD', 'VisA', 'DS-MVTec', ...)."""
    return image.replace("\\", "/").split("/", 1)[0]


def product_of(image: str) -> str | None:
    """The product (category) name: the second path component, when there is one."""
    parts = image.replace("\\", "/").split("/")
    return parts[1] if len(parts) > 2 else None


def is_normal_image(image: str) -> bool:
    """True for normal images, decided as MMAD does (the path contains 'good')."""
    return NORMAL_FLAG in image


def load_mmad(data_root: Path, index_file: str = "mmad.json") -> dict[str, MmadItem]:
    """Read ``<data_root>/mmad.json`` into items keyed by image path (raises ``InvalidRequestError``)."""
    path = data_root / index_file
    if not path.is_file():
        raise InvalidRequestError(f"no {index_file} under {data_root}; point --data at the MMAD folder")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequestError(f"cannot read {path} as JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidRequestError(f"{path} must hold an object keyed by image path")
    items: dict[str, MmadItem] = {}
    for image, value in raw.items():
        try:
            items[str(image)] = MmadItem.model_validate(value)
        except ValidationError as exc:
            where, problem = first_problem(exc, "entry")
            raise InvalidRequestError(f"{path}: entry {image!r} is malformed at {where}: {problem}") from exc
    return items
