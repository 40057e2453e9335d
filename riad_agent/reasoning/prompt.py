"""Prompt parts -> chat segments: instruction, knowledge, templates, defect exemplars, query image, question.

The question is always the last segment, on its own: the reasoner re-asks it with the options in
other orders on the cached prompt before it (``decode.py``), so nothing may follow it.
"""

from __future__ import annotations

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
    request's defect-exemplar crops follow the templates, each named by its type.
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
    segments.append(TextSegment(question_text(request.question)))
    return segments
