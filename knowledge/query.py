"""Build the knowledge retrieval query from the question, its options and the expert's evidence."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from riad_agent.schemas import Region

# Options that say nothing about what a defect looks like are dropped from the query.
_UNINFORMATIVE = re.compile(r"^(yes|no|none( of the above)?|not sure|unknown|n/?a)\.?$", re.IGNORECASE)
_GENERIC_QUESTION = re.compile(
    r"^(is there any (defect|anomaly)( in the (object|image))?|does (the|this) (object|image) "
    r"have (any )?(defects?|anomal(y|ies)))\??$",
    re.IGNORECASE,
)


def position_words(region: Region, image_size: tuple[int, int]) -> str:
    """Where a region lies, in words: 'top left', 'centre', 'bottom edge' ..."""
    width, height = image_size
    cx = (region.x0 + region.x1) / 2 / max(1, width)
    cy = (region.y0 + region.y1) / 2 / max(1, height)
    vertical = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    horizontal = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    if not vertical and not horizontal:
        return "centre"
    if vertical and horizontal:
        return f"{vertical} {horizontal}"
    return f"{vertical or horizontal} edge"


def size_words(region: Region, image_size: tuple[int, int]) -> str:
    """How large a region is relative to the image: 'small', 'medium' or 'large'."""
    width, height = image_size
    share = (region.x1 - region.x0) * (region.y1 - region.y0) / max(1, width * height)
    return "small" if share < 0.02 else "large" if share > 0.15 else "medium"


def score_words(score: float) -> str:
    """The calibrated anomaly score (0.5 = edge of normal) in words."""
    if score >= 0.75:
        return "clear defect"
    if score >= 0.5:
        return "possible defect"
    return "looks normal"


def build_retrieval_query(
    question: str | None = None,
    options: Mapping[str, str] | None = None,
    category: str | None = None,
    regions: Sequence[Region] = (),
    image_size: tuple[int, int] | None = None,
    anomaly_score: float | None = None,
    max_regions: int = 2,
    description: str | None = None,
) -> str:
    """One retrieval query: category words, the question, informative options and the evidence in words.

    ``description`` is the expert's region description (``RegionDescription.sentence()``), so defect
    entries are ranked by how well their visual cues match what the region looks like. Pure: same
    inputs, same query. Generic questions ("Is there any defect in the object?") and
    yes/no options carry no retrieval signal and are left out.
    """
    parts: list[str] = []
    if category:
        parts.append(category.split("/")[-1].replace("_", " "))
    if question and question.strip() and not _GENERIC_QUESTION.match(question.strip()):
        parts.append(question.strip())
    for text in (options or {}).values():
        text = text.strip()
        if text and not _UNINFORMATIVE.match(text):
            parts.append(text)
    if anomaly_score is not None:
        parts.append(score_words(anomaly_score))
    if regions and image_size:
        strongest = sorted(regions, key=lambda r: r.score, reverse=True)[:max_regions]
        for region in strongest:
            parts.append(
                f"{size_words(region, image_size)} anomaly at the {position_words(region, image_size)}"
            )
    if description:  # the region in words (shape, contrast, size): what a defect entry's visual cues say
        parts.append(description.rstrip("."))
    if not parts:
        parts.append("defect appearance")
    return ". ".join(parts)
