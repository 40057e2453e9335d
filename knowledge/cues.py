"""Candidate defect types without exemplars: knowledge entries ranked by how well their visual cues match a region.

The vision expert describes its strongest region in fixed words (``riad_agent/expert/describe.py``):
a shape (elongated / compact / spread), a contrast (darker / brighter / colour shift / little
contrast) and a position on the part (edge / inner edge / centre / inside). A defect entry's visual
cues, name, aliases and typical location are plain prose; the words below say which of those
attributes the prose speaks of ("a thin, very dark, jagged line" -> elongated, darker). On each
dimension the entry speaks of, it scores 1 / (attributes it names) when the region's attribute is
among them and -0.5 when it is not; the match is the weighted mean over those dimensions, so an
entry silent on a dimension is neither helped nor hurt. Words after a negation in the same clause
("nothing is missing or recoloured"), or after "away" ("away from the rim"), do not count; an entry
that may sit "anywhere" is silent on position; a region in the centre is also inside the part.
Ties keep the retrieval's order.

This is a lean for an operator (the report calls it "low confidence, not a verdict"); only the
product's labelled exemplars state a type (``riad_agent/products``). Measured in docs/results.md
("Candidate types ranked by their cues"), ``benchmarks/knowledge_typing.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from riad_agent.schemas import CandidateType, DescribedRegion, KnowledgeHit


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Words that name each attribute of a region, by dimension (lower case, whole words).
CUE_WORDS: dict[str, dict[str, frozenset[str]]] = {
    "shape": {
        "elongated": _words(
            "line lines linear streak streaks stripe stripes scratch scratches scrape thin long longer "
            "elongated crack cracks cracked fissure fracture thread threads fibre fiber hair groove "
            "cut cuts narrow seam path trace"
        ),
        "compact": _words(
            "small spot spots dot dots hole holes pit pits round compact speck specks point puncture "
            "perforation bubble dent dents circular blob chip"
        ),
        "spread": _words(
            "blotch blotches area areas large diffuse spread smear smears extensive broad cloud cloudy uneven"
        ),
    },
    "contrast": {
        "darker": _words(
            "dark darker darkened darkens black blackish blackened shadow shadowed burnt burn soot dull"
        ),
        "brighter": _words(
            "bright brighter light lighter white whitish shiny glare pale highlight glossy reflective"
        ),
        "colour shift": _words(
            "colour color coloured colored tint tinted discoloured discolored discolouration "
            "discoloration hue cast red blue green yellow brown orange purple rust rusty "
            "stain stained"
        ),
        "little contrast": _words(
            "faint subtle slight pushed bent bend bulge deformed deformation shifted misaligned "
            "misplaced rotated warped"
        ),
    },
    "position": {
        # not "outline" or "contour": they are a shape's as often as the part's
        "edge": _words("edge edges rim border boundary periphery outer"),
        "inner edge": _words("inner opening bore"),
        "centre": _words("centre center middle central"),
        "inside": _words("inside surface interior away within"),
    },
}

#: A region's attribute also satisfies these broader ones an entry may name (a region in the centre
#: is inside the part; the edge of an opening is an edge).
SATISFIES: dict[str, frozenset[str]] = {
    "centre": frozenset({"centre", "inside"}),
    "inner edge": frozenset({"inner edge", "edge"}),
}

#: Words that say the entry's defect may sit anywhere: its position is no cue.
_ANYWHERE = _words("anywhere")

#: Entries the candidates are ranked from: the category's normal entry and all its defect types (the
#: shipped base has at most 18 per category).
CANDIDATE_POOL = 24

#: How much each dimension weighs: where a defect sits says less about its type than how it looks.
DIMENSION_WEIGHTS: dict[str, float] = {"shape": 1.0, "contrast": 1.0, "position": 0.5}

#: What an entry loses on a dimension where it names only attributes the region does not have.
MISMATCH_PENALTY = 0.5

_NEGATION = _words("no not nothing without never neither nor unlike")
#: Words that count, then negate the rest of their clause ("away from the rim": inside, not edge).
_AWAY = _words("away apart")
_CLAUSE_END = re.compile(r"[.;:,()]")
_WORD = re.compile(r"[a-z]+")


def cue_text(hit: KnowledgeHit) -> str:
    """The parts of a defect entry that say what it looks like and where: title, aliases, visual cues,
    typical location (an entry in another format: its whole text)."""
    text = hit.text
    start = text.find("Also called:")
    if start < 0:
        start = text.find("Visual cues:")
    end = text.find("How it differs from normal:")
    body = text[max(start, 0) : end if end > start else len(text)]
    return f"{hit.title}. {body}"


def named_attributes(text: str) -> dict[str, set[str]]:
    """The attributes ``text`` names, per dimension (words after a negation in a clause skipped)."""
    named: dict[str, set[str]] = {dimension: set() for dimension in CUE_WORDS}
    lowered = text.lower()
    for clause in _CLAUSE_END.split(lowered):
        for word in _WORD.findall(clause):
            if word in _NEGATION:
                break
            for dimension, attributes in CUE_WORDS.items():
                for attribute, words in attributes.items():
                    if word in words:
                        named[dimension].add(attribute)
            if word in _AWAY:
                break
    if _ANYWHERE & set(_WORD.findall(lowered)):
        named["position"] = set()
    return named


def region_attributes(region: DescribedRegion) -> dict[str, str]:
    """The region's attribute on each dimension."""
    return {"shape": region.shape, "contrast": region.contrast, "position": region.position}


def cue_match(hit: KnowledgeHit, region: DescribedRegion) -> CandidateType:
    """How well ``hit``'s cues match ``region``: the weighted mean over the dimensions the entry speaks
    of (1 when it names only the region's attributes; 0 when it names nothing)."""
    named = named_attributes(cue_text(hit))
    score = spoken = 0.0
    agreed: list[str] = []
    clashed: list[str] = []
    for dimension, attribute in region_attributes(region).items():
        names = named[dimension]
        if not names:
            continue
        weight = DIMENSION_WEIGHTS[dimension]
        spoken += weight
        if SATISFIES.get(attribute, frozenset({attribute})) & names:
            score += weight / len(names)
            agreed.append(attribute)
        else:
            score -= weight * MISMATCH_PENALTY
            clashed.append(attribute)
    return _candidate(hit, score / spoken if spoken else 0.0, agreed, clashed)


def rank_by_cues(hits: Sequence[KnowledgeHit], region: DescribedRegion | None) -> list[CandidateType]:
    """The defect entries among ``hits``, best cue match first (retrieval order breaks ties).

    Without a described region the retrieval order stands (every match 0)."""
    defects = [hit for hit in hits if hit.kind == "defect" and hit.defect_type]
    if region is None:
        return [_candidate(hit, 0.0, [], []) for hit in defects]
    matches = [cue_match(hit, region) for hit in defects]
    order = sorted(range(len(matches)), key=lambda i: (-matches[i].cue_match, i))
    return [matches[i] for i in order]


def _candidate(hit: KnowledgeHit, score: float, agreed: list[str], clashed: list[str]) -> CandidateType:
    return CandidateType(
        id=hit.id,
        title=hit.title,
        defect_type=hit.defect_type or "",
        cue_match=round(score, 4),
        agreed=agreed,
        clashed=clashed,
    )
