"""What an option of a multiple-choice question says of the part: normal, anomalous, or nothing.

Read by the reasoner (an asked answer must not contradict a confident expert score,
``LatentConfig.follow_confident_verdict``) and by the explanation (an answer that contradicts the
verdict is said). English only, by full match of every clause: an unusual wording says nothing rather
than the wrong thing ("Normal bracket", "Abnormal colour" and "Normal, but stained" say nothing;
"Nothing, it is normal" says normal).
"""

from __future__ import annotations

import re

from riad_agent.schemas import MultipleChoiceQuestion, Verdict

#: An option that says, and only says, that the part has no defect ("No defect.", "None", "Normal").
_NO_DEFECT_OPTION = re.compile(
    r"(?:there\s+(?:is|are)\s+|it\s+has\s+|the\s+\w+\s+(?:is|has)\s+)?"
    r"(?:no\s+(?:visible\s+|obvious\s+|apparent\s+)?(?:defects?|anomal(?:y|ies)|damage|flaws?)"
    r"(?:\s+(?:is\s+|are\s+)?(?:visible|found|present|detected|observed|seen))?"
    r"|none|normal|good|ok|defect[- ]free|flawless|intact|nothing)",
    re.IGNORECASE,
)
#: A clause that says the part as a whole is fine ("it is normal", "the part looks good",
#: "nothing is wrong").
_FINE_CLAUSE = re.compile(
    r"(?:(?:(?:it|this|everything|the\s+(?:\w+\s+)?\w+|this\s+\w+)\s+(?:is|looks|appears|seems)"
    r"|(?:it|everything)['\u2019]s|looks|appears|seems)(?:\s+to\s+be)?"
    r"\s+(?:completely\s+|perfectly\s+|entirely\s+)?"
    r"(?:normal|fine|good|ok|intact|undamaged|flawless|defect[- ]free|as\s+expected)(?:\s+to\s+me)?)"
    r"|nothing\s+(?:is\s+)?(?:wrong|abnormal|unusual|defective)",
    re.IGNORECASE,
)
#: Where an option's clauses part ("Nothing, it is normal"; "No - the part looks fine").
_CLAUSE_BREAK = re.compile(r"\s*[,;:]\s*|\s+[-\u2013\u2014]\s+")
#: A question about whether there is a defect at all ("Is there any defect in the object?").
_PRESENCE_QUESTION = re.compile(
    r"\b(?:is|are)\s+there\s+(?:any|a|an)\b[^?]*\b(?:defects?|anomal\w*|damage|flaws?)\b"
    r"|\b(?:is|are)\s+(?:it|the\s+\w+|this\s+\w+)\s+(?:defective|anomalous|damaged)\b",
    re.IGNORECASE,
)


def answer_leaning(question: MultipleChoiceQuestion, letter: str) -> Verdict | None:
    """What the chosen option of an asked question says of the part, or None when it says nothing.

    Yes / no to a question about whether there is a defect; an option that says "no defect"; any
    other option of a question that offered one (the part has the defect it names).
    """
    text = question.options[letter].strip()
    if _PRESENCE_QUESTION.search(question.text):
        if re.match(r"yes\b", text, re.IGNORECASE):
            return "anomalous"
        if re.match(r"no\b", text, re.IGNORECASE):
            return "normal"
    if _says_no_defect(text):
        return "normal"
    if any(_says_no_defect(other) for other in question.options.values()):
        return "anomalous"
    return None


def _says_no_defect(option: str) -> bool:
    """True when every clause of the option says the part is fine; a bare "No" may lead them."""
    clauses = [c for c in _CLAUSE_BREAK.split(option.strip().rstrip(".!").strip()) if c]
    if len(clauses) > 1 and re.fullmatch(r"no", clauses[0], re.IGNORECASE):
        clauses = clauses[1:]
    return bool(clauses) and all(_says_fine(clause) for clause in clauses)


def _says_fine(clause: str) -> bool:
    return any(rule.fullmatch(clause) is not None for rule in (_NO_DEFECT_OPTION, _FINE_CLAUSE))


def contradicting_options(question: MultipleChoiceQuestion, score: float | None, margin: float) -> set[str]:
    """The letters whose options contradict a confident calibrated score (``score >= 1 - margin``: the
    part is anomalous; ``<= margin``: normal); empty when the score is not confident or None, or when
    every option would be excluded."""
    if score is None or margin <= 0 or margin < score < 1.0 - margin:
        return set()
    verdict: Verdict = "anomalous" if score >= 1.0 - margin else "normal"
    against = {
        letter for letter in question.options if answer_leaning(question, letter) not in (None, verdict)
    }
    return against if len(against) < len(question.options) else set()
