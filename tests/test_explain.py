"""The report's verdict: each reason for ``uncertain``, and where an anomalous verdict comes from."""

from __future__ import annotations

from typing import Any

import pytest

from riad_agent.evidence import ExpertFindings
from riad_agent.explain import UNCERTAIN_BAND, answer_leaning, build_report, verdict_for
from riad_agent.protocols import ReasoningResult
from riad_agent.schemas import (
    DescribedRegion,
    InspectionReport,
    InspectionRequest,
    KnowledgeHit,
    MultipleChoiceQuestion,
    ReasoningTrace,
    Region,
    RegionDescription,
    score_text,
)


def _trace(**kw: object) -> ReasoningTrace:
    base: dict[str, object] = {
        "model_id": "fake",
        "reward_kind": "entropy",
        "latent_tokens": 4,
        "initial_reward": 0.0,
        "final_reward": 0.0,
    }
    return ReasoningTrace.model_validate({**base, **kw})


def _findings(
    score: float,
    notes: list[str] | None = None,
    regions: list[Region] | None = None,
    cautions: list[str] | None = None,
    description: RegionDescription | None = None,
) -> ExpertFindings:
    return ExpertFindings(
        score=score,
        raw_score=score,
        threshold=0.5,
        regions=regions or [],
        backbone="fake",
        pose="fixed (references)",
        notes=notes or [],
        cautions=cautions or [],
        description=description,
    )


def _flagged(
    request: InspectionRequest,
    anomaly: ExpertFindings,
    reasoning: ReasoningResult | None,
    knowledge: list[KnowledgeHit] | None = None,
    **kw: Any,
) -> InspectionReport:
    """The report of a 64 x 64 px image (no category) with these findings, reasoning and knowledge."""
    return build_report(
        request, (64, 64), (64, 64), None, False, knowledge or [], anomaly, reasoning, [], {}, {}, **kw
    )


def _report(anomaly: ExpertFindings | None) -> InspectionReport:
    request = InspectionRequest(image="query.png")
    return build_report(request, (64, 64), (64, 64), None, False, [], anomaly, None, [], {}, {})


@pytest.mark.parametrize("score", [0.5, 0.5 + 0.9 * UNCERTAIN_BAND, 0.5 - 0.9 * UNCERTAIN_BAND])
def test_a_score_in_the_band_is_uncertain(score: float) -> None:
    assert verdict_for(score) == "uncertain"
    assert _report(_findings(score)).verdict == "uncertain"


def test_an_uncertain_verdict_says_where_to_look_and_why_it_is_not_called() -> None:
    box = Region(x0=1, y0=2, x1=9, y1=12, score=0.3, area=40)
    report = _report(_findings(0.47, regions=[box]))
    assert report.verdict == "uncertain" and report.regions
    assert "x 1-9, y 2-12" in report.explanation
    assert f"within {UNCERTAIN_BAND:.2f} of the edge of normal, too close to call" in report.explanation


def test_clear_scores_give_firm_verdicts_and_the_pose() -> None:
    box = Region(x0=1, y0=2, x1=9, y1=12, score=0.9, area=40)
    anomalous = _report(_findings(0.9, regions=[box]))
    assert anomalous.verdict == "anomalous" and anomalous.regions
    assert "Pose: fixed (references)." in anomalous.explanation
    edged = _findings(0.9, regions=[box]).model_copy(
        update={"scored_area": "the image less its outer 6 % on each side"}
    )
    assert (
        "Pose: fixed (references); scored: the image less its outer 6 % on each side."
        in _report(edged).explanation
    )
    assert _report(_findings(0.1)).verdict == "normal"


def test_the_report_says_how_many_references_judged_the_image_and_the_pose() -> None:
    box = Region(x0=1, y0=2, x1=9, y1=12, score=0.9, area=40)
    two = _findings(0.9, regions=[box]).model_copy(
        update={"references": 2, "scored_area": "the disc inscribed in the image"}
    )
    report = _report(two)
    assert report.references == 2 and report.pose == "fixed (references)"
    assert (
        "Compared with 2 normal references; pose: fixed (references); scored: the disc inscribed in the image."
        in report.explanation
    )
    one = _report(_findings(0.1).model_copy(update={"references": 1}))
    assert (
        one.references == 1
        and "Compared with 1 normal reference; pose: fixed (references)." in one.explanation
    )
    # nothing compared: no count, no pose
    unjudged = _report(None)
    assert unjudged.references == 0 and unjudged.pose is None and "Compared with" not in unjudged.explanation


def test_without_references_the_verdict_is_uncertain() -> None:
    report = _report(None)
    assert report.verdict == "uncertain"
    assert "No normal reference images were given" in report.explanation
    # its score is not the expert's calibrated one, and the first sentence says so
    assert "uncalibrated anomaly score" in report.explanation
    assert "calibrated anomaly score" not in report.explanation.replace("uncalibrated", "")


def test_without_references_the_explanation_says_what_was_missing_and_what_to_do() -> None:
    request = InspectionRequest(image="query.png")
    unknown = build_report(
        request,
        (64, 64),
        (64, 64),
        None,
        False,
        [],
        None,
        None,
        ["unknown_product", "no_references"],
        {},
        {},
        category_similarity=0.8694,
    )
    assert "matches no registered product (the nearest is at similarity 0.87" in unknown.explanation
    assert "register it (riad product add" in unknown.explanation
    assert "No normal reference images were given" not in unknown.explanation  # one reason, not two
    nothing = build_report(
        request, (64, 64), (64, 64), None, False, [], None, None, ["unknown_product"], {}, {}
    )
    assert "(none is registered)" in nothing.explanation
    named = build_report(
        request,
        (64, 64),
        (64, 64),
        "solar-poly",
        False,
        [],
        None,
        None,
        ["no_knowledge_for_category", "no_references"],
        {},
        {},
    )
    assert "'solar-poly' is neither a registered product nor a knowledge category" in named.explanation
    assert unknown.verdict == nothing.verdict == named.verdict == "uncertain"


def test_an_image_the_expert_could_not_judge_is_uncertain_with_its_reason() -> None:
    report = _report(
        _findings(0.5, notes=["the image's aspect ratio 4.00 does not fit the references' 1.00"])
    )
    assert report.verdict == "uncertain" and report.regions == []
    assert "could not judge this image: the image's aspect ratio 4.00" in report.explanation


def test_a_normal_verdict_calls_its_regions_weak_deviations_not_defects() -> None:
    weak = Region(x0=1, y0=2, x1=9, y1=12, score=0.65, area=40)
    report = _report(_findings(0.2, regions=[weak]))
    assert report.verdict == "normal" and report.defect_type is None
    assert "unlike the normal references" not in report.explanation
    assert "too weak for the whole image to count as defective" in report.explanation
    # the place is not stated as more anomalous than the image (its pixel score read 0.65)
    assert report.regions[0].score == pytest.approx(0.2) and "score 0.20" in report.explanation


def test_an_uncertain_verdicts_regions_score_no_higher_than_the_image_and_an_anomalous_ones_keep_theirs() -> (
    None
):
    strong = Region(x0=1, y0=2, x1=9, y1=12, score=0.7, area=40)
    uncertain = _report(_findings(0.48, regions=[strong]))
    assert uncertain.verdict == "uncertain" and [r.score for r in uncertain.regions] == [pytest.approx(0.48)]
    anomalous = _report(_findings(0.6, regions=[strong]))
    assert anomalous.verdict == "anomalous" and [r.score for r in anomalous.regions] == [pytest.approx(0.7)]


def test_a_normal_verdict_never_carries_the_reasoners_defect_type() -> None:
    question = MultipleChoiceQuestion(text="What defect?", options={"A": "Crack", "B": "Hole"})
    crack = KnowledgeHit(
        id="mvtec/hazelnut/crack",
        dataset="mvtec",
        category="mvtec/hazelnut",
        kind="defect",
        defect_type="crack",
        title="Crack",
        text="A thin dark line.",
        score=0.9,
    )
    reasoning = ReasoningResult(answer="A", text="A", trace=_trace(option_probabilities={"A": 0.9, "B": 0.1}))
    request = InspectionRequest(image="query.png", question=question)
    args = ((64, 64), (64, 64), None, False, [crack])
    normal = build_report(request, *args, _findings(0.1), reasoning, [], {}, {})
    anomalous = build_report(request, *args, _findings(0.9), reasoning, [], {}, {})
    assert normal.verdict == "normal" and normal.defect_type is None and normal.answer == "A"
    assert anomalous.verdict == "anomalous" and anomalous.defect_type == "crack"
    assert "Defect type: Crack [mvtec/hazelnut/crack], chosen by the reasoner." in anomalous.explanation


@pytest.mark.parametrize("probabilities", [{"A": 0.55, "B": 0.45}, {}])
def test_a_narrow_reasoner_answer_is_a_lean_not_a_defect_type(probabilities: dict[str, float]) -> None:
    question = MultipleChoiceQuestion(text="What defect?", options={"A": "Crack", "B": "Hole"})
    hits = [
        KnowledgeHit(
            id=f"mvtec/hazelnut/{kind}",
            dataset="mvtec",
            category="mvtec/hazelnut",
            kind="defect",
            defect_type=kind,
            title=kind.capitalize(),
            text="A cue.",
            score=0.9,
        )
        for kind in ("crack", "hole")
    ]
    reasoning = ReasoningResult(answer="A", text="A", trace=_trace(option_probabilities=probabilities))
    request = InspectionRequest(image="query.png", question=question)
    report = _flagged(request, _findings(0.9), reasoning, hits)
    assert report.answer == "A" and report.defect_type is None  # answered, but no type is stated
    assert "chosen by the reasoner" not in report.explanation
    assert "The reasoner leaned to Crack" in report.explanation and "too close to state" in report.explanation
    if probabilities:
        assert "(option probability 0.55 against 0.45 for B)" in report.explanation
    assert "Candidate types from the knowledge" in report.explanation


def test_references_that_disagree_turn_a_normal_verdict_uncertain_with_the_reason() -> None:
    caution = "reference 4 of 4 differs from the others"
    report = _report(_findings(0.1, cautions=[caution]))
    assert report.verdict == "uncertain"
    assert caution in report.explanation
    assert "cannot call this part normal" in report.explanation


def test_references_that_disagree_leave_an_anomalous_verdict_standing() -> None:
    region = Region(x0=1, y0=1, x1=9, y1=9, score=0.9, area=40)
    report = _report(_findings(0.9, regions=[region], cautions=["reference 2 of 3 differs from the others"]))
    assert report.verdict == "anomalous"
    assert "The references disagree" in report.explanation
    assert "cannot call this part normal" not in report.explanation


def _scratch_words() -> RegionDescription:
    region = DescribedRegion(
        box=(10, 4, 30, 8),
        score=0.9,
        area_px=60,
        area_pct_of_part=1.5,
        shape="elongated",
        blobs=1,
        axis_ratio=5.0,
        length_over_width=9.0,
        fill=0.7,
        contrast="darker",
        lightness_delta=-20.0,
        colour_delta=2.0,
        compared_with="surroundings",
        position="edge",
        side="top",
    )
    return RegionDescription(regions=[region], part_area_px=4000, whole_image=False)


def test_an_anomalous_report_says_what_the_defect_looks_like_in_the_originals_pixels() -> None:
    box = Region(x0=10, y0=4, x1=30, y1=8, score=0.9, area=60)
    request = InspectionRequest(image="query.png")
    findings = _findings(0.9, regions=[box], description=_scratch_words())
    report = build_report(request, (128, 128), (64, 64), None, False, [], findings, None, [], {}, {})
    assert report.verdict == "anomalous"
    words = "One region, 240 px (1.5 % of the part), elongated, darker than the part around it"
    assert report.defect_description is not None and report.defect_description.startswith(words)
    assert words in report.explanation and "near the top edge of the part" in report.explanation


def test_a_thin_mark_in_a_large_box_names_the_box_too() -> None:
    thin = _scratch_words().regions[0].model_copy(update={"box": (10, 4, 39, 36), "area_px": 9})
    text = RegionDescription(regions=[thin], part_area_px=4000, whole_image=False).sentence()
    assert text.startswith("One region, 9 px (1.5 % of the part) within a 29 x 32 px box, elongated")
    assert "box" not in _scratch_words().sentence()  # 60 px filling its 20 x 4 box: nothing to add


def test_a_speck_on_a_large_part_is_not_said_to_be_zero_percent_of_it() -> None:
    speck = (
        _scratch_words()
        .regions[0]
        .model_copy(update={"box": (10, 4, 12, 13), "area_px": 1, "area_pct_of_part": 0.001})
    )
    text = RegionDescription(regions=[speck], part_area_px=90000, whole_image=False).sentence()
    assert text.startswith("One region, 1 px (under 0.01 % of the part) within a 2 x 9 px box")
    small = speck.model_copy(update={"area_pct_of_part": 0.04})
    assert (
        "(0.04 % of the part)"
        in RegionDescription(regions=[small], part_area_px=9000, whole_image=False).sentence()
    )


def test_a_normal_report_carries_no_defect_description() -> None:
    report = _report(_findings(0.1, description=_scratch_words()))
    assert report.verdict == "normal" and report.defect_description is None
    assert "elongated" not in report.explanation


def test_a_normal_report_ignores_the_exemplars_and_an_anomalous_one_states_their_type() -> None:
    from riad_agent.evidence import ExemplarTyping

    typing = ExemplarTyping.of("washer", [("hole", 0.9), ("crack", 0.7)])
    request = InspectionRequest(image="query.png")
    normal = build_report(
        request, (64, 64), (64, 64), None, False, [], _findings(0.1), None, [], {}, {}, typing=typing
    )
    assert normal.defect_type is None and "labelled" not in normal.explanation
    box = Region(x0=1, y0=2, x1=9, y1=12, score=0.9, area=40)
    flagged = _flagged(request, _findings(0.9, regions=[box]), None, typing=typing)
    assert flagged.defect_type == "hole"
    assert (
        "looks most like the labelled hole exemplars of washer (hole 0.90, crack 0.70)" in flagged.explanation
    )


def test_without_a_stated_type_the_knowledge_defects_are_named_as_candidates_only() -> None:
    hits = [
        KnowledgeHit(
            id="x/washer/normal",
            score=0.9,
            dataset="x",
            category="x/washer",
            kind="normal",
            title="Washer: normal",
            text="round",
        ),
        KnowledgeHit(
            id="x/washer/scratch",
            score=0.8,
            dataset="x",
            category="x/washer",
            kind="defect",
            defect_type="scratch",
            title="Washer: scratch",
            text="a thin line",
        ),
        KnowledgeHit(
            id="x/washer/hole",
            score=0.7,
            dataset="x",
            category="x/washer",
            kind="defect",
            defect_type="hole",
            title="Washer: hole",
            text="a dark spot",
        ),
    ]
    box = Region(x0=1, y0=2, x1=9, y1=12, score=0.9, area=40)
    request = InspectionRequest(image="query.png")
    flagged = build_report(
        request, (64, 64), (64, 64), None, False, hits, _findings(0.9, regions=[box]), None, [], {}, {}
    )
    # no described region: the retrieval's order, and the report says there was nothing to compare
    assert (
        "(low confidence, not a verdict): Washer: scratch (no cue to compare); Washer: hole (no cue to compare)."
        in flagged.explanation
    )
    assert [c.defect_type for c in flagged.candidate_types] == ["scratch", "hole"]
    assert flagged.defect_type is None  # candidates are never the answer
    # a described region: the entries whose cues match it come first (a thin line, darker: the scratch
    # entry names a line, the hole entry a dark spot; the line's shape wins over the spot's contrast)
    described = build_report(
        request,
        (64, 64),
        (64, 64),
        None,
        False,
        hits,
        _findings(0.9, regions=[box], description=_scratch_words()),
        None,
        [],
        {},
        {},
    )
    first = described.candidate_types[0]
    assert first.defect_type == "scratch" and first.agreed == ["elongated"]
    assert "Washer: scratch (matches elongated)" in described.explanation
    normal = build_report(request, (64, 64), (64, 64), None, False, hits, _findings(0.1), None, [], {}, {})
    assert "Candidate types" not in normal.explanation and normal.candidate_types == []


def test_an_answer_taken_from_the_exemplars_says_so_and_names_the_models_lean() -> None:
    question = MultipleChoiceQuestion(
        text="What is the type of the defect?", options={"A": "Crack.", "B": "Missing piece."}
    )
    reasoning = ReasoningResult(
        answer="B", text="B", trace=_trace(answer_source="exemplars", model_answer="A")
    )
    request = InspectionRequest(image="query.png", question=question)
    box = Region(x0=1, y0=2, x1=9, y1=12, score=0.9, area=40)
    report = _flagged(request, _findings(0.9, regions=[box]), reasoning)
    assert report.answer == "B"
    assert (
        "Answer B (Missing piece) follows the product's labelled exemplars (the model alone leaned to A)"
        in (report.explanation)
    )
    assert "Latent reasoning (fake) answered" not in report.explanation


def test_an_answer_the_confident_verdict_chose_says_what_the_model_leaned_to() -> None:
    question = MultipleChoiceQuestion(
        text="What is the type of the defect?", options={"A": "Crack.", "B": "Scratch.", "C": "No defect."}
    )
    trace = _trace(answer_source="verdict", model_answer="C")
    trace = trace.model_copy(update={"option_probabilities": {"A": 0.25, "B": 0.2, "C": 0.55}})
    reasoning = ReasoningResult(answer="A", text="A", trace=trace)
    request = InspectionRequest(image="query.png", question=question)
    box = Region(x0=1, y0=2, x1=9, y1=12, score=0.95, area=40)
    report = _flagged(request, _findings(0.95, regions=[box]), reasoning)
    assert report.answer == "A" and report.answer_agrees_with_verdict is True
    assert (
        "Latent reasoning (fake) leaned to C (No defect), which contradicts the vision expert's confident "
        "score; the answer is the most likely option that does not: A (Crack)." in report.explanation
    )
    # a forced answer is neither a stated type nor the reasoner's lean
    assert report.defect_type is None and "The reasoner leaned to" not in report.explanation
    assert "unlike the verdict" not in report.explanation
    assert report.answer_caveat() == " (the model leaned to C, which the expert's confident score rules out)"
    assert "answer: A (the model leaned to C" in report.summary()


def test_the_explanation_says_when_the_latent_loop_stopped_early() -> None:
    request = InspectionRequest(image="query.png")
    box = Region(x0=1, y0=2, x1=9, y1=12, score=0.9, area=40)
    for stopped, words in (
        ("plateau", "(the reward stopped rising)"),
        ("threshold", "(the reward reached its threshold)"),
    ):
        reasoning = ReasoningResult(answer=None, text="", trace=_trace(stopped=stopped))
        report = _flagged(request, _findings(0.9, regions=[box]), reasoning)
        assert f"over 0 latent iterations {words}" in report.explanation
    plain = _flagged(
        request, _findings(0.9, regions=[box]), ReasoningResult(answer=None, text="", trace=_trace())
    )
    assert "over 0 latent iterations, " in plain.explanation


def test_an_option_without_a_full_stop_still_ends_its_sentence() -> None:
    question = MultipleChoiceQuestion(text="What type of defect?", options={"A": "Scratch", "B": "Hole"})
    reasoning = ReasoningResult(answer="B", text="B", trace=_trace())
    request = InspectionRequest(image="query.png", question=question)
    box = Region(x0=1, y0=2, x1=9, y1=12, score=0.9, area=40)
    report = _flagged(request, _findings(0.9, regions=[box]), reasoning)
    assert "answered B. Hole. Reward" in report.explanation


def test_the_explanation_names_an_int8_model_and_the_trace_keeps_the_precision() -> None:
    question = MultipleChoiceQuestion(text="Is there any defect?", options={"A": "Yes.", "B": "No."})
    request = InspectionRequest(image="query.png", question=question)
    box = Region(x0=1, y0=2, x1=9, y1=12, score=0.9, area=40)
    for precision, words in (
        ("int8", "Latent reasoning (fake, int8) answered A."),
        ("float32", "Latent reasoning (fake) answered A."),
    ):
        reasoning = ReasoningResult(answer="A", text="A", trace=_trace(precision=precision))
        report = _flagged(request, _findings(0.9, regions=[box]), reasoning)
        assert words in report.explanation
        assert report.trace is not None and report.trace.precision == precision


@pytest.mark.parametrize(
    ("score", "text"),
    [
        (0.93, "0.93"),
        (0.548, "0.548"),
        (0.5504, "0.55"),
        (0.452, "0.452"),
        (0.4504, "0.4504"),
        (0.4499, "0.45"),
    ],
)
def test_a_score_is_printed_so_that_it_never_reads_as_the_other_side_of_a_band_edge(
    score: float, text: str
) -> None:
    assert score_text(score) == text


def test_an_uncertain_score_just_under_the_anomalous_edge_does_not_print_as_the_edge() -> None:
    report = _report(_findings(0.548))
    assert report.verdict == "uncertain"
    assert (
        "calibrated anomaly score 0.548" in report.explanation and "(anomaly score 0.548)" in report.summary()
    )
    # its strongest place, capped at the image's score, does not print as the edge either
    box = Region(x0=1, y0=2, x1=9, y1=12, score=0.7, area=40)
    assert "score 0.548" in _report(_findings(0.548, regions=[box])).explanation


@pytest.mark.parametrize(
    ("text", "options", "letter", "leaning"),
    [
        ("Is there any defect in the object?", {"A": "Yes.", "B": "No."}, "A", "anomalous"),
        ("Is there any defect in the object?", {"A": "Yes.", "B": "No."}, "B", "normal"),
        ("Is the cell defective?", {"A": "No", "B": "Yes"}, "A", "normal"),
        ("What kind of defect is visible?", {"A": "A crack", "B": "No visible defects"}, "B", "normal"),
        ("What kind of defect is visible?", {"A": "A crack", "B": "No visible defects"}, "A", "anomalous"),
        ("What kind of defect is visible?", {"A": "A crack", "B": "Abnormal colour"}, "B", None),
        ("Where is the defect?", {"A": "Top left", "B": "Centre"}, "A", None),
        ("What is the object?", {"A": "Washer", "B": "Normal bracket"}, "A", None),
        ("Is there a defect?", {"A": "There is no defect.", "B": "A crack."}, "B", "anomalous"),
    ],
)
def test_what_an_asked_answer_says_of_the_part(
    text: str, options: dict[str, str], letter: str, leaning: str | None
) -> None:
    assert answer_leaning(MultipleChoiceQuestion(text=text, options=options), letter) == leaning
