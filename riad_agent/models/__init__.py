"""Vision-language model adapters behind one protocol (:class:`VisionLanguageModel`)."""

from riad_agent.models.base import (
    ImageSegment,
    Injection,
    PrefixState,
    PreparedPrompt,
    Segment,
    SuffixOutput,
    TextSegment,
    VisionLanguageModel,
    VisualSpan,
)

__all__ = [
    "ImageSegment",
    "Injection",
    "PrefixState",
    "PreparedPrompt",
    "Segment",
    "SuffixOutput",
    "TextSegment",
    "VisionLanguageModel",
    "VisualSpan",
]
