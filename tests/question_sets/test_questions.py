"""MMAD-style question generation: subtasks per label, option sets, answers, determinism."""

from __future__ import annotations

import random

import numpy as np
import pytest

from riad_agent.question_sets.questions import (
    CLASSIFICATION,
    DETECTION,
    LOCALIZATION,
    OBJECT_ANALYSIS,
    OBJECT_CLASSIFICATION,
    LabelledImage,
    QuestionMaker,
    place_of,
)


def _mask(rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((90, 90), dtype=bool)
    mask[rows, cols] = True
    return mask


def test_subtasks_follow_the_labels() -> None:
    maker = QuestionMaker()
    normal = LabelledImage("mvtec/hazelnut", anomalous=False)
    typed = LabelledImage(
        "mvtec/hazelnut", anomalous=True, defect_type="crack", mask=_mask(slice(0, 10), slice(0, 10))
    )
    untyped = LabelledImage("elpv/solar_cell", anomalous=True)
    assert maker.subtasks(normal) == [DETECTION, OBJECT_CLASSIFICATION, OBJECT_ANALYSIS]
    assert len(maker.subtasks(typed)) == 7
    assert maker.subtasks(untyped) == [DETECTION, OBJECT_CLASSIFICATION, OBJECT_ANALYSIS]


def test_every_question_is_well_formed_and_its_answer_is_right() -> None:
    maker = QuestionMaker()
    image = LabelledImage(
        "mvtec/transistor", anomalous=True, defect_type="bent_lead", mask=_mask(slice(70, 80), slice(0, 20))
    )
    questions = {q.subtask: q for q in maker.questions(image, random.Random(3))}
    assert questions[DETECTION].answer_text == "Yes." and len(questions[DETECTION].question.options) == 2
    assert questions[CLASSIFICATION].answer_text == "Bent lead"
    # the distractors of a classification question are the category's own other types first
    others = {"Cut lead", "Damaged case", "Misplaced"}
    assert set(questions[CLASSIFICATION].question.options.values()) - {"Bent lead"} == others
    assert questions[LOCALIZATION].answer_text == "bottom left"
    assert questions[OBJECT_CLASSIFICATION].answer_text == "Transistor"
    for question in questions.values():
        options = list(question.question.options.values())
        assert len(options) == len({o.lower() for o in options})  # no duplicate options
        assert question.answer in question.question.options


def test_same_seed_same_questions_and_answers_are_spread() -> None:
    maker = QuestionMaker()
    image = LabelledImage(
        "synthetic/tile", anomalous=True, defect_type="stain", mask=_mask(slice(40, 50), slice(40, 50))
    )
    first = [(q.question.options, q.answer) for q in maker.questions(image, random.Random(7))]
    again = [(q.question.options, q.answer) for q in maker.questions(image, random.Random(7))]
    assert first == again
    letters = [maker.ask(image, CLASSIFICATION, random.Random(seed)).answer for seed in range(40)]
    assert set(letters) == {"A", "B", "C", "D"}  # the right option is not always in the same place


@pytest.mark.parametrize(
    ("rows", "cols", "place"),
    [
        (slice(0, 5), slice(0, 5), "top left"),
        (slice(40, 50), slice(40, 50), "center"),
        (slice(85, 90), slice(40, 50), "bottom"),
    ],
)
def test_place_of_a_mask(rows: slice, cols: slice, place: str) -> None:
    assert place_of(_mask(rows, cols)) == place


def test_a_type_missing_from_the_knowledge_file_is_an_error() -> None:
    with pytest.raises(ValueError, match="no defect type"):
        QuestionMaker().ask(LabelledImage("mvtec/hazelnut", True, "melted"), CLASSIFICATION, random.Random(0))
