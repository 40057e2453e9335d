"""Vision-language model adapters behind one protocol (:class:`VisionLanguageModel`)."""

from riad_agent.models.base import (
    BatchedVisionLanguageModel,
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
    "BatchedVisionLanguageModel",
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
