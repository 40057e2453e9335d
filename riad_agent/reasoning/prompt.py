"""Prompt parts -> chat segments: instruction, knowledge, templates, defect exemplars, query image, question.

The question is always the last segment, on its own: the reasoner re-asks it with the options in
other orders on the cached prompt before it (``decode.py``), so nothing may follow it.
"""

from __future__ import annotations

import re

from riad_agent.models.base import ImageSegment, Segment, TextSegment
from riad_agent.protocols import ReasoningInput
from riad_agent.schemas import MultipleChoiceQuestion

ANSWER_FORMAT = "Answer with the option's letter first, then give a short reason."


def knowledge_text(request: ReasoningInput, limit_chars: int = 600, max_hits: int | None = None) -> str:
    """The retrieved knowledge as a short bulleted block (empty when there is none)."""
    hits = request.knowledge if max_hits is None else request.knowledge[:max_hits]
    if not hits:
        return ""
    lines = ["Reference knowledge:"]
    for hit in hits:
        text = " ".join(hit.text.split())
        if len(text) > limit_chars:
            text = text[: limit_chars - 3] + "..."
        lines.append(f"- {hit.title}: {text}")
    return "\n".join(lines) + "\n"


def question_text(question: MultipleChoiceQuestion) -> str:
    """The prompt's last segment: the question, its options and the answer format."""
    return "\n" + question.render() + "\n" + ANSWER_FORMAT


def exemplar_segments(request: ReasoningInput) -> list[Segment]:
    """Each defect exemplar that has a crop, as an image after a line naming its type (none: [])."""
    segments: list[Segment] = []
    crops = [hint for hint in request.exemplars if hint.crop is not None]
    for index, hint in enumerate(crops, start=1):
        assert hint.crop is not None
        segments.append(TextSegment(f"Known defect example {index} ({hint.defect_type}): "))
        segments.append(ImageSegment(hint.crop, role="template"))
        segments.append(TextSegment("\n"))
    return segments


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def preferred_option(question: MultipleChoiceQuestion, defect_type: str | None) -> str | None:
    """The letter of the one option that names ``defect_type``, or None.

    An option names it when its words are the type's ('missing_piece' = 'Missing piece.') or begin
    with them ('colour' = 'Colour defect'); an exact match wins over a prefix, and two options that
    name it equally leave the choice to the model.
    """
    wanted = _words(defect_type or "")
    if not wanted:
        return None
    for exact in (True, False):
        named = [
            letter
            for letter, text in question.options.items()
            if (_words(text) == wanted if exact else _words(text)[: len(wanted)] == wanted)
        ]
        if named:
            return named[0] if len(named) == 1 else None
    return None


def exemplar_text(request: ReasoningInput) -> str:
    """What the product's labelled defect exemplars say of the strongest region, as one line (none: '').

    In the words a type question's options use ("missing_piece" -> the option "Missing piece"): the
    clear type, then the best exemplar's similarity of each type; without a clear type, "unclear"
    and the similarities. (The builtin model follows this line for few answers; the reasoner's
    ``follow_exemplars`` rule, decode.py, is what makes a type answer follow the exemplars.)
    """
    if not request.exemplars:
        return ""

    def words(kind: str) -> str:
        letter = preferred_option(request.question, kind)
        return (
            kind.replace("_", " ") if letter is None else request.question.options[letter].strip().rstrip(".")
        )

    listed = ", ".join(f"{words(hint.defect_type)} {hint.similarity:.2f}" for hint in request.exemplars[:3])
    if request.exemplar_type is not None:
        return f"\nThe type of the defect is {words(request.exemplar_type)} (labelled examples: {listed})."
    return f"\nThe type of the defect is unclear (labelled examples: {listed})."


def build_segments(
    request: ReasoningInput,
    instruction: str,
    knowledge_chars: int = 600,
    knowledge_hits: int | None = None,
    max_templates: int | None = None,
    exemplar_images: bool = False,
) -> list[Segment]:
    """The user turn of one inspection, in the method's order (latents are appended later).

    At most ``knowledge_hits`` entries (all when None), each cut to ``knowledge_chars`` characters,
    and at most ``max_templates`` template images (all when None). With ``exemplar_images`` the
    request's defect-exemplar crops follow the templates, each named by its type. The exemplars'
    verdict (:func:`exemplar_text`) follows the query image for every model.
    """
    segments: list[Segment] = [TextSegment(instruction.strip() + "\n")]
    knowledge = knowledge_text(request, knowledge_chars, knowledge_hits)
    if knowledge:
        segments.append(TextSegment(knowledge))
    templates = request.templates if max_templates is None else request.templates[:max_templates]
    for index, template in enumerate(templates, start=1):
        segments.append(TextSegment(f"Normal template image {index}: "))
        segments.append(ImageSegment(template, role="template"))
        segments.append(TextSegment("\n"))
    if exemplar_images:
        segments.extend(exemplar_segments(request))
    category = f" ({request.category})" if request.category else ""
    segments.append(TextSegment(f"Query image{category}: "))
    segments.append(
        ImageSegment(request.image, role="query", evidence=request.patch_prior, score=request.image_score)
    )
    exemplars = exemplar_text(request)
    if exemplars:
        segments.append(TextSegment(exemplars))
    segments.append(TextSegment(question_text(request.question)))
    return segments
