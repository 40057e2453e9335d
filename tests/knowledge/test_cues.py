"""Candidate defect types: a knowledge entry's cues read as region attributes, entries ranked by them."""

from __future__ import annotations

from riad_agent.knowledge.cues import cue_text, named_attributes, rank_by_cues
from riad_agent.schemas import DescribedRegion, KnowledgeHit


def _hit(kind: str, cues: str, location: str = "Anywhere on the surface.") -> KnowledgeHit:
    return KnowledgeHit(
        id=f"synthetic/washer/{kind}",
        score=0.5,
        dataset="synthetic",
        category="synthetic/washer",
        kind="defect",
        defect_type=kind,
        title=f"Washer: {kind.replace('_', ' ')}",
        text=f"Washer - defect '{kind}' (structural anomaly, severity low). Visual cues: {cues} "
        f"Typical location: {location} How it differs from normal: unlike a hole it is bright, not dark.",
    )


def _region(shape: str, contrast: str, position: str = "inside") -> DescribedRegion:
    return DescribedRegion.model_validate(
        {
            "box": (10, 10, 40, 14),
            "score": 0.9,
            "area_px": 80,
            "area_pct_of_part": 2.0,
            "shape": shape,
            "blobs": 1,
            "axis_ratio": 4.0,
            "length_over_width": 8.0,
            "fill": 0.6,
            "contrast": contrast,
            "lightness_delta": 15.0,
            "colour_delta": 2.0,
            "compared_with": "surroundings",
            "position": position,
        }
    )


CRACK = _hit("crack", "A thin, very dark, jagged line.")
SCRATCH = _hit("scratch", "A thin, bright streak, lighter than the surface.", "Usually away from the rim.")
HOLE = _hit("hole", "A small, compact, nearly black spot.")
BENT = _hit("bent", "The outline is pushed sideways; nothing is missing or recoloured.", "Near the rim.")


def test_an_entrys_cues_name_the_region_attributes_they_describe() -> None:
    assert named_attributes("A thin, very dark, jagged line.") == {
        "shape": {"elongated"},
        "contrast": {"darker"},
        "position": set(),
    }
    # words after a negation, or after "away", do not count
    assert named_attributes("nothing is missing or recoloured")["contrast"] == set()
    assert named_attributes("Usually away from the rim.")["position"] == {"inside"}
    # what tells it from normal is not what it looks like: "bright, not dark" is left out
    assert "bright, not dark" not in cue_text(CRACK) and "jagged line" in cue_text(CRACK)


def test_the_entry_whose_cues_match_the_region_comes_first_whatever_the_retrieval_order() -> None:
    hits = [HOLE, CRACK, SCRATCH, BENT]  # the retrieval's order
    bright_line = rank_by_cues(hits, _region("elongated", "brighter"))
    assert [c.defect_type for c in bright_line][:2] == ["scratch", "crack"]
    assert bright_line[0].cue_match == 1.0 and bright_line[0].agreed == ["elongated", "brighter", "inside"]
    assert bright_line[1].clashed == ["brighter"]  # a crack is dark
    dark_spot = rank_by_cues(hits, _region("compact", "darker"))
    assert dark_spot[0].defect_type == "hole"
    warped_rim = rank_by_cues(hits, _region("compact", "little contrast", "edge"))
    assert warped_rim[0].defect_type == "bent"


def test_without_a_described_region_the_retrieval_order_stands_and_normal_entries_are_no_candidates() -> None:
    normal = KnowledgeHit(
        id="synthetic/washer/normal",
        score=0.9,
        dataset="synthetic",
        category="synthetic/washer",
        kind="normal",
        title="Washer: normal appearance",
        text="A flat round washer.",
    )
    ranked = rank_by_cues([normal, HOLE, CRACK], None)
    assert [c.defect_type for c in ranked] == ["hole", "crack"]
    assert all(c.cue_match == 0.0 and not c.agreed for c in ranked)


def test_entries_that_match_equally_keep_the_retrieval_order() -> None:
    twin = _hit("crack_two", "A thin, very dark, jagged line.")
    ranked = rank_by_cues([twin, CRACK], _region("elongated", "darker"))
    assert [c.defect_type for c in ranked] == ["crack_two", "crack"]
