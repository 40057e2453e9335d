"""MMAD-style multiple-choice questions from an image's labels, mask and the category's knowledge file.

The seven subtasks follow MMAD's wording and option style. Distractors come from the same category
first (other defect types, other causes), then from other categories, so every question has a fixed
number of options. Option order is drawn from the given ``random.Random``: same seed, same set.

Subtasks that need what an image lacks are skipped: no defect type (ELPV labels only say
"defective") means no classification, description or analysis question; no mask means no
localisation question; normal images get detection and the two object questions.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from riad_agent.knowledge.loaders import default_base_path, parse_category_file
from riad_agent.knowledge.schema import CategoryFile, DefectSpec
from riad_agent.schemas import MultipleChoiceQuestion

DETECTION = "Anomaly Detection"
CLASSIFICATION = "Defect Classification"
LOCALIZATION = "Defect Localization"
DESCRIPTION = "Defect Description"
ANALYSIS = "Defect Analysis"
OBJECT_CLASSIFICATION = "Object Classification"
OBJECT_ANALYSIS = "Object Analysis"

PLACES = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")


DEFECT_QUESTIONS: dict[str, tuple[str, Callable[[DefectSpec], str]]] = {
    CLASSIFICATION: ("There is a defect in the object. What is the type of the defect?", lambda d: d.name),
    DESCRIPTION: (
        "There is a defect in the object. What does the defect look like?",
        lambda d: first_sentence(d.visual_cues),
    ),
    ANALYSIS: (
        "There is a defect in the object. What is the most likely cause of this defect?",
        lambda d: first_sentence(d.likely_cause),
    ),
}
"""Defect subtasks answered from the type's knowledge entry: the question and each option's text."""


@dataclass(frozen=True)
class LabelledImage:
    """What the questions are made from: the category, the verdict and, when known, type and mask."""

    category: str  # 'dataset/category' of the knowledge base
    anomalous: bool
    defect_type: str | None = None
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class Question:
    """One generated question with its answer letter and subtask."""

    subtask: str
    question: MultipleChoiceQuestion
    answer: str

    @property
    def answer_text(self) -> str:
        return self.question.options[self.answer]


@lru_cache(maxsize=1)
def knowledge_files(base: Path | None = None) -> dict[str, CategoryFile]:
    """Every category file of the packaged knowledge base, keyed 'dataset/category'."""
    root = base or default_base_path()
    specs = [parse_category_file(path) for path in sorted(root.glob("*/*.yaml"))]
    return {spec.key: spec for spec in specs}


def first_sentence(text: str) -> str:
    text = " ".join(text.split())
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def place_of(mask: np.ndarray) -> str:
    """Where the mask's centre of mass lies on a 3 x 3 split of the image ('top left' ... 'bottom right')."""
    rows, cols = np.nonzero(mask)
    height, width = mask.shape
    row = min(2, int(3 * rows.mean() / height))
    col = min(2, int(3 * cols.mean() / width))
    return PLACES[3 * row + col]


def _choice(
    text: str, right: str, wrong: list[str], rng: random.Random, count: int
) -> tuple[MultipleChoiceQuestion, str]:
    """``right`` plus the first ``count - 1`` distinct ``wrong`` options (callers order them), shuffled."""
    seen = {right.lower()}
    distractors = []
    for option in wrong:
        if option.lower() not in seen:
            seen.add(option.lower())
            distractors.append(option)
    options = [right, *distractors[: count - 1]]
    rng.shuffle(options)
    letters = [chr(ord("A") + i) for i in range(len(options))]
    answer = letters[options.index(right)]
    return MultipleChoiceQuestion(text=text, options=dict(zip(letters, options, strict=True))), answer


class QuestionMaker:
    """Builds the questions of one image (``questions``) or one question of a chosen subtask (``ask``)."""

    def __init__(self, specs: dict[str, CategoryFile] | None = None, options: int = 4) -> None:
        self.specs = specs if specs is not None else knowledge_files()
        self.options = options

    def subtasks(self, image: LabelledImage) -> list[str]:
        """The subtasks this image can be asked about."""
        wanted = [DETECTION, OBJECT_CLASSIFICATION, OBJECT_ANALYSIS]
        if image.anomalous and image.defect_type is not None:
            wanted += [CLASSIFICATION, DESCRIPTION, ANALYSIS]
        if image.anomalous and image.mask is not None and image.mask.any():
            wanted.append(LOCALIZATION)
        return wanted

    def questions(self, image: LabelledImage, rng: random.Random) -> list[Question]:
        return [self.ask(image, subtask, rng) for subtask in self.subtasks(image)]

    def ask(self, image: LabelledImage, subtask: str, rng: random.Random) -> Question:
        spec = self.specs[image.category]
        others = [s for key, s in self.specs.items() if key != image.category]
        rng.shuffle(others)
        n = self.options
        if subtask == DETECTION:
            right = "Yes." if image.anomalous else "No."
            question, answer = _choice("Is there any defect in the object?", right, ["Yes.", "No."], rng, 2)
        elif subtask == OBJECT_CLASSIFICATION:
            question, answer = _choice(
                "What kind of product is shown in the image?",
                spec.display_name,
                [s.display_name for s in others],
                rng,
                n,
            )
        elif subtask == OBJECT_ANALYSIS:
            question, answer = _choice(
                "Which description fits the product in the image?",
                first_sentence(spec.normal.description),
                [first_sentence(s.normal.description) for s in others],
                rng,
                n,
            )
        else:
            question, answer = self._defect_question(image, spec, others, subtask, rng)
        return Question(subtask=subtask, question=question, answer=answer)

    def _defect_question(
        self,
        image: LabelledImage,
        spec: CategoryFile,
        others: list[CategoryFile],
        subtask: str,
        rng: random.Random,
    ) -> tuple[MultipleChoiceQuestion, str]:
        n = self.options
        if subtask == LOCALIZATION:
            if image.mask is None:
                raise ValueError("a localisation question needs a mask")
            right = place_of(image.mask)
            places = list(PLACES)
            rng.shuffle(places)
            return _choice("There is a defect in the object. Where is the defect?", right, places, rng, n)
        defects = {d.type: d for d in spec.defects}
        if image.defect_type not in defects:
            raise ValueError(
                f"{image.category} has no defect type {image.defect_type!r} in its knowledge file"
            )
        true = defects[image.defect_type]
        same = [d for d in spec.defects if d.type != true.type]
        rng.shuffle(same)
        elsewhere = [d for s in others for d in s.defects]
        rng.shuffle(elsewhere)
        pool = same + elsewhere
        if subtask not in DEFECT_QUESTIONS:
            raise ValueError(f"unknown subtask {subtask!r}")
        text, option = DEFECT_QUESTIONS[subtask]
        return _choice(text, option(true), [option(d) for d in pool], rng, n)
