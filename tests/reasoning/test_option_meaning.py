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


def test_a_no_defect_option_in_several_clauses_is_read_and_a_qualified_one_is_not() -> None:
    def leaning(option: str) -> set[str]:
        question = MultipleChoiceQuestion(
            text="What is wrong with this hazelnut?", options={"A": "A crack", "B": "A hole", "C": option}
        )
        return contradicting_options(question, 0.95, 0.2)

    for fine in (
        "Nothing, it is normal",
        "No, the hazelnut looks fine.",
        "No defects detected",
        "It is normal",
        "It's OK",
        "Looks good to me",
    ):
        assert leaning(fine) == {"C"}, fine  # the operator's wording: excluded on a broken part
    for qualified in (
        "Normal, but stained",
        "It is normal except for a scratch",
        "None of the above",
        "Looks normal but stained",
        "It's cracked",
    ):
        assert leaning(qualified) == set(), qualified  # says more than "no defect": read as nothing
