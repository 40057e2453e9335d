"""Which options of an asked question contradict a confident expert score."""

from __future__ import annotations

from riad_agent.reasoning.option_meaning import contradicting_options
from riad_agent.schemas import MultipleChoiceQuestion

PRESENCE = MultipleChoiceQuestion(
    text="Is there any defect in the object?", options={"A": "Yes.", "B": "No."}
)
TYPES = MultipleChoiceQuestion(
    text="What kind of defect is visible?", options={"A": "A crack", "B": "A stain", "C": "No defect"}
)
LOCATION = MultipleChoiceQuestion(text="Where is the defect?", options={"A": "Top left.", "B": "Centre."})


def test_a_confident_score_excludes_the_options_that_say_the_opposite() -> None:
    assert contradicting_options(PRESENCE, 0.95, 0.2) == {"B"}
    assert contradicting_options(PRESENCE, 0.05, 0.2) == {"A"}
    assert contradicting_options(TYPES, 0.99, 0.2) == {"C"}
    assert contradicting_options(TYPES, 0.1, 0.2) == {"A", "B"}  # a normal part: only "No defect" fits


def test_nothing_is_excluded_without_a_confident_score_or_a_meaning() -> None:
    assert contradicting_options(PRESENCE, 0.6, 0.2) == set()  # inside (margin, 1 - margin)
    assert contradicting_options(PRESENCE, 0.3, 0.2) == set()
    assert contradicting_options(PRESENCE, None, 0.2) == set()  # no references: no calibrated score
    assert contradicting_options(PRESENCE, 0.99, 0.0) == set()  # margin 0: off
    assert contradicting_options(LOCATION, 0.99, 0.2) == set()  # its options say nothing of the verdict
    no_only = MultipleChoiceQuestion(text="Which defect?", options={"A": "No defect", "B": "None"})
    assert contradicting_options(no_only, 0.99, 0.2) == set()  # never every option
