"""Prompt parts -> chat segments: instruction, knowledge, templates, query image, question."""

from __future__ import annotations

from riad_agent.models.base import ImageSegment, Segment, TextSegment
from riad_agent.protocols import ReasoningInput

ANSWER_FORMAT = "Answer with the option's letter first, then give a short reason."


def knowledge_text(request: ReasoningInput, limit_chars: int = 600) -> str:
    """The retrieved knowledge as a short bulleted block (empty when there is none)."""
    if not request.knowledge:
        return ""
    lines = ["Reference knowledge:"]
    for hit in request.knowledge:
        text = " ".join(hit.text.split())
        if len(text) > limit_chars:
            text = text[: limit_chars - 3] + "..."
        lines.append(f"- {hit.title}: {text}")
    return "\n".join(lines) + "\n"


def build_segments(request: ReasoningInput, instruction: str) -> list[Segment]:
    """The user turn of one inspection, in the method's order (latents are appended later)."""
    segments: list[Segment] = [TextSegment(instruction.strip() + "\n")]
    knowledge = knowledge_text(request)
    if knowledge:
        segments.append(TextSegment(knowledge))
    for index, template in enumerate(request.templates, start=1):
        segments.append(TextSegment(f"Normal template image {index}: "))
        segments.append(ImageSegment(template, role="template"))
        segments.append(TextSegment("\n"))
    category = f" ({request.category})" if request.category else ""
    segments.append(TextSegment(f"Query image{category}: "))
    segments.append(ImageSegment(request.image, role="query"))
    segments.append(TextSegment("\n" + request.question.render() + "\n" + ANSWER_FORMAT))
    return segments
