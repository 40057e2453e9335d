"""Prompt parts -> chat segments: instruction, knowledge, templates, query image, question."""

from __future__ import annotations

from riad_agent.models.base import ImageSegment, Segment, TextSegment
from riad_agent.protocols import ReasoningInput

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


def build_segments(
    request: ReasoningInput,
    instruction: str,
    knowledge_chars: int = 600,
    knowledge_hits: int | None = None,
    max_templates: int | None = None,
) -> list[Segment]:
    """The user turn of one inspection, in the method's order (latents are appended later).

    At most ``knowledge_hits`` entries (all when None), each cut to ``knowledge_chars`` characters,
    and at most ``max_templates`` template images (all when None).
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
    category = f" ({request.category})" if request.category else ""
    segments.append(TextSegment(f"Query image{category}: "))
    segments.append(ImageSegment(request.image, role="query", evidence=request.patch_prior, score=request.image_score))
    segments.append(TextSegment("\n" + request.question.render() + "\n" + ANSWER_FORMAT))
    return segments
