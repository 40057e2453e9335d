"""Explanation formatting: the structured report from the parts the graph gathered.

Pure functions of their inputs, no models: the verdict rule, the choice of defect type, the prose
explanation and the citations are decided here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, get_args

from riad_agent.errors import RiadError
from riad_agent.knowledge.cues import rank_by_cues
from riad_agent.protocols import ReasoningResult
from riad_agent.reasoning.option_meaning import answer_leaning
from riad_agent.schemas import UNCERTAIN_BAND as UNCERTAIN_BAND  # re-exported: the band's old home
from riad_agent.schemas import (
    CandidateType,
    InspectionOptions,
    InspectionReport,
    InspectionRequest,
    KnowledgeCitation,
    KnowledgeHit,
    MultipleChoiceQuestion,
    Region,
    RegionDescription,
    Verdict,
    references_text,
    score_text,
)

if TYPE_CHECKING:
    from riad_agent.evidence import ExemplarTyping, ExpertFindings

#: Defect entries named as candidate types when nothing states a type: the category's entries ranked by
#: how well their cues match the strongest region (riad_agent/knowledge/cues.py; docs/results.md,
#: "Candidate types ranked by their cues"; benchmarks/knowledge_typing.py).
KNOWLEDGE_CANDIDATES = 2

#: The reasoner's chosen option becomes the report's ``defect_type`` only when its (debiased) option
#: probability leads the runner-up's by this much; a closer answer is reported as a lean, not a type.
#: Measured on generated type questions (docs/results.md, "The reasoner's type answers"): the builtin
#: model's type answers were at chance whatever their lead, wrong ones up to 0.69; 0.7 keeps them
#: leans, while a model that answers 0.8 against 0.1 states its type.
REASONER_TYPE_LEAD = 0.7

#: The question asked when the caller asked none, as MMAD's anomaly-discrimination subtask does.
DEFAULT_QUESTION = MultipleChoiceQuestion(
    text="Is there any defect in the object?", options={"A": "Yes.", "B": "No."}
)
_ANOMALOUS_LETTER = "A"


def verdict_for(score: float, band: float = UNCERTAIN_BAND) -> Verdict:
    """Map a calibrated anomaly score to a verdict."""
    if score >= 0.5 + band:
        return "anomalous"
    if score <= 0.5 - band:
        return "normal"
    return "uncertain"


def expert_is_clear(anomaly: ExpertFindings | None) -> bool:
    """Whether the vision expert alone gives a firm verdict: it compared with references, could judge
    the image, the references agree with each other, and the score is outside the uncertain band."""
    if anomaly is None or anomaly.notes or anomaly.cautions:
        return False
    return verdict_for(anomaly.score) != "uncertain"


#: Reasoners whose answer to "any defect?" is the expert's score read back: the builtin model answers
#: from the expert's evidence line whatever the image shows (docs/results.md, "Builtin compact VLM"
#: and "Reasoning only where it can add evidence": P(defect) 0.17-0.19 below the line's limit and
#: 0.77-0.83 above it, whatever the image).
ECHOING_REASONERS: tuple[str, ...] = ("riad-builtin",)


def echoes_expert(model_id: str | None) -> bool:
    """Whether the reasoner ``model_id`` only repeats the expert's verdict (see :data:`ECHOING_REASONERS`)."""
    return bool(model_id) and str(model_id).startswith(ECHOING_REASONERS)


def reasoner_needed(
    options: InspectionOptions,
    question: MultipleChoiceQuestion | None,
    anomaly: ExpertFindings | None,
    reasoner_echoes: bool = False,
) -> bool:
    """Whether the latent reasoner runs: asked for, and (with ``reasoner_when='needed'``) a question was
    asked or the expert's verdict is not clear. With references the verdict is the calibrated expert's,
    so on a clear case the reasoner could only add seconds.

    ``reasoner_echoes``: the reasoner's answer to "any defect?" is the expert's score read back (the
    builtin model answers from the expert's evidence line, whatever the image shows), so once the
    expert has scored the image that reasoner cannot settle an unclear verdict and is not run for it.
    """
    if not options.use_reasoner:
        return False
    if options.reasoner_when == "always" or question is not None:
        return True
    if expert_is_clear(anomaly):
        return False
    return not (reasoner_echoes and anomaly is not None)


def skipped_reasoner_sentence(anomaly: ExpertFindings | None) -> str:
    """Why the wanted reasoner did not run (see :func:`reasoner_needed`)."""
    if expert_is_clear(anomaly):
        return (
            "The latent reasoner was not run: the expert's verdict is clear and no question was asked "
            "(reasoner 'always' runs it)."
        )
    return (
        "The latent reasoner was not run: the builtin model's answer to \"any defect?\" repeats the expert's "
        "score, so it cannot settle an unclear verdict (a VLM that judges the image itself can; reasoner "
        "'always' runs it)."
    )


def reasoner_opinion(
    verdict: Verdict,
    anomaly: ExpertFindings | None,
    reasoning: ReasoningResult | None,
    question: MultipleChoiceQuestion | None,
) -> str | None:
    """The one rule when expert and reasoner disagree, in words: the calibrated expert decides.

    For the default question (its option A is "defect") by the reasoner's P(defect); for an asked
    question by what its chosen option says of the part (:func:`answer_leaning`: "No defect", or a
    defect when the question offered "No defect", or yes / no to "is there a defect?"). Only when the
    expert compared with references; without references the reasoner's P(defect) is the score and
    cannot disagree with it. The answer itself stays the reasoner's.
    """
    if anomaly is None or anomaly.notes or reasoning is None:
        return None
    if question is not None:
        letter = reasoning.answer
        leans = asked_leaning(anomaly, letter, question)
        if leans is None or letter is None:
            return None
        said = (
            f"The answer ({letter}. {question.options[letter].strip().rstrip('.')}) says the part is {leans}"
        )
        if verdict == "uncertain":
            return (
                f"{said}; the verdict stays uncertain, because only the expert's score is calibrated on "
                "this product's normal references."
            )
        if leans != verdict:
            return (
                f"{said}, unlike the verdict; the verdict follows the vision expert, whose score is calibrated "
                "on this product's normal references."
            )
        return None
    probability = reasoner_anomaly_probability(reasoning)
    if probability is None:
        return None
    leans = "anomalous" if probability >= 0.5 else "normal"
    if verdict == "uncertain" and echoes_expert(reasoning.trace.model_id):
        return (
            f"The latent reasoner leans {leans} (P(defect) {probability:.2f}), but the builtin model's answer "
            "repeats the expert's score rather than judging the image, so it is no further evidence; "
            "the verdict stays uncertain."
        )
    if verdict == "uncertain":
        return (
            f"The latent reasoner leans {leans} (P(defect) {probability:.2f}); the verdict stays uncertain, "
            "because only the expert's score is calibrated on this product's normal references."
        )
    if leans != verdict:
        return (
            f"The latent reasoner disagrees (P(defect) {probability:.2f}); the verdict follows the vision "
            "expert, whose score is calibrated on this product's normal references."
        )
    return None


def asked_leaning(
    anomaly: ExpertFindings | None, answer: str | None, question: MultipleChoiceQuestion | None
) -> Verdict | None:
    """What an asked question's answer says of the part (:func:`answer_leaning`), when the expert compared
    with references (else its score is not calibrated and nothing overrides the answer); else None."""
    if question is None or answer is None or answer not in question.options:
        return None
    if anomaly is None or anomaly.notes:
        return None
    return answer_leaning(question, answer)


def answer_agrees(
    verdict: Verdict,
    anomaly: ExpertFindings | None,
    answer: str | None,
    question: MultipleChoiceQuestion | None,
) -> bool | None:
    """Whether an asked question's answer says of the part what the verdict says (the report's
    ``answer_agrees_with_verdict``): None when the answer says nothing of the part (see
    :func:`asked_leaning`) or the verdict is uncertain."""
    leans = asked_leaning(anomaly, answer, question)
    return None if leans is None or verdict == "uncertain" else leans == verdict


def reasoner_anomaly_probability(result: ReasoningResult) -> float | None:
    """P(defect) from the reasoner's answer to the default question, when it answered that one."""
    probabilities = result.trace.option_probabilities
    if not probabilities:
        if result.answer is None:
            return None
        return 1.0 if result.answer == _ANOMALOUS_LETTER else 0.0
    total = sum(probabilities.values())
    if total <= 0:
        return None
    return probabilities.get(_ANOMALOUS_LETTER, 0.0) / total


def anomaly_score(
    anomaly: ExpertFindings | None, reasoning: ReasoningResult | None, question: MultipleChoiceQuestion | None
) -> float:
    """The report's calibrated score: the expert's when it ran, else the reasoner's P(defect), else 0.5.

    The expert's score is calibrated on normal references per category; the reasoner's probability
    is only used when no references were given, because an uncalibrated language model must not
    move a calibrated score, and only when the reasoner answered the default question (``question``
    None), whose option A is "defect".
    """
    if anomaly is not None:
        return float(min(1.0, max(0.0, anomaly.score)))
    if reasoning is not None and question is None:
        probability = reasoner_anomaly_probability(reasoning)
        if probability is not None:
            return float(min(1.0, max(0.0, probability)))
    return 0.5


def scale_regions(
    regions: list[Region], factor_x: float, factor_y: float, size: tuple[int, int]
) -> list[Region]:
    """Map regions found on a working copy back to original pixel coordinates."""
    width, height = size
    scaled = []
    for region in regions:
        x0 = min(width - 1, int(region.x0 * factor_x))
        y0 = min(height - 1, int(region.y0 * factor_y))
        x1 = max(x0 + 1, min(width, round(region.x1 * factor_x)))
        y1 = max(y0 + 1, min(height, round(region.y1 * factor_y)))
        scaled.append(
            Region(
                x0=x0, y0=y0, x1=x1, y1=y1, score=region.score, area=int(region.area * factor_x * factor_y)
            )
        )
    return scaled


def _defect_from_answer(
    reasoning: ReasoningResult | None, question: MultipleChoiceQuestion | None, knowledge: list[KnowledgeHit]
) -> KnowledgeHit | None:
    """The knowledge entry of the defect type the reasoner's chosen option names, if any."""
    if reasoning is None or question is None or reasoning.answer is None:
        return None
    chosen = question.options.get(reasoning.answer, "").strip().rstrip(".").lower()
    for hit in knowledge:
        if hit.kind != "defect" or hit.defect_type is None:
            continue
        names = {hit.defect_type.lower(), hit.defect_type.replace("_", " ").lower(), hit.title.lower()}
        if chosen in names:
            return hit
    return None


def _answer_lead(reasoning: ReasoningResult) -> tuple[float, str | None, float]:
    """(probability of the chosen option, the runner-up's letter, its probability); no probabilities:
    (0, None, 0), which never clears :data:`REASONER_TYPE_LEAD`."""
    probabilities = reasoning.trace.option_probabilities
    if reasoning.answer is None or reasoning.answer not in probabilities:
        return 0.0, None, 0.0
    others = sorted(
        ((p, letter) for letter, p in probabilities.items() if letter != reasoning.answer), reverse=True
    )
    runner_up, letter = others[0] if others else (0.0, None)
    return probabilities[reasoning.answer], letter, runner_up


def _where(region: Region, size: tuple[int, int]) -> str:
    width, height = size
    cx = (region.x0 + region.x1) / 2 / max(width, 1)
    cy = (region.y0 + region.y1) / 2 / max(height, 1)
    vertical = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else "middle"
    horizontal = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "centre"
    return "centre" if (vertical, horizontal) == ("middle", "centre") else f"{vertical} {horizontal}"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def explanation_text(
    verdict: Verdict,
    score: float,
    regions: list[Region],
    size: tuple[int, int],
    anomaly: ExpertFindings | None,
    reasoning: ReasoningResult | None,
    question: MultipleChoiceQuestion | None,
    defect: KnowledgeHit | None,
    degraded: list[str],
    description: RegionDescription | None = None,
    typing: ExemplarTyping | None = None,
    candidates: Sequence[CandidateType] = (),
    asked: MultipleChoiceQuestion | None = None,
    skipped_reasoner: bool = False,
    leaned: KnowledgeHit | None = None,
    category: str | None = None,
    category_similarity: float | None = None,
) -> str:
    """A few plain sentences that say what was found, where, and on what evidence.

    ``question`` is the question answered (the default one when none was asked); ``asked`` the
    request's own question, or None; ``skipped_reasoner``: the reasoner was wanted but not needed;
    ``leaned``: the defect type the reasoner's answer names, when its lead was too small to state it;
    ``candidates``: the knowledge's candidate types to name when nothing states a type; ``category``
    and ``category_similarity``: what was named, or how near the image came to a registered product.
    """
    calibrated = (
        f"Verdict: {verdict} (calibrated anomaly score {score_text(score)}; 0.50 is the edge of normal)."
    )
    sentences = [calibrated]
    if anomaly is None:  # the score is the reasoner's own probability, or 0.5: nothing calibrated it
        sentences = [
            f"Verdict: {verdict} (uncalibrated anomaly score {score:.2f}, not the expert's).",
            _without_references(degraded, category, category_similarity),
        ]
    elif anomaly.notes:
        sentences.append("The vision expert could not judge this image: " + "; ".join(anomaly.notes) + ".")
    else:
        basis = [f"pose: {anomaly.pose}"] if anomaly.pose else []
        if anomaly.pose and anomaly.scored_area:
            basis.append(f"scored: {anomaly.scored_area}")
        if anomaly.references:
            told = "".join(f"; {part}" for part in basis)
            sentences.append(f"Compared with {references_text(anomaly.references)}{told}.")
        elif basis:
            told = "; ".join(basis)
            sentences.append(told[0].upper() + told[1:] + ".")
        if regions:
            top = max(regions, key=lambda r: r.score)
            box = f"x {top.x0}-{top.x1}, y {top.y0}-{top.y1}, score {score_text(top.score)}"
            described = description is not None and bool(description.regions)
            # with a description, its words say where on the part; else the image's thirds
            place = f"at {box}" if described else f"in the {_where(top, size)} ({box})"
            if verdict == "anomalous":
                found = _count(len(regions), "region", "regions")
                strongest = "it is" if len(regions) == 1 else "the strongest is"
                sentences.append(
                    f"The vision expert found {found} unlike the normal references; {strongest} {place}."
                )
            elif verdict == "normal":
                sentences.append(
                    f"The largest deviation from the normal references is {place}, too weak for the whole "
                    "image to count as defective."
                )
            else:
                sentences.append(
                    f"The largest deviation from the normal references is {place}; the image's score is "
                    f"within {UNCERTAIN_BAND:.2f} of the edge of normal, too close to call either way."
                )
            if description is not None and described:
                sentences.append(description.sentence())
            if typing is not None:
                sentences.append(typing.sentence())
        else:
            sentences.append("The vision expert found no region unlike the normal references.")
        if anomaly.cautions:
            consequence = "" if verdict == "anomalous" else ", so the expert cannot call this part normal"
            sentences.append("The references disagree: " + "; ".join(anomaly.cautions) + consequence + ".")
    if defect is not None:
        sentences.append(f"Defect type: {defect.title} [{defect.id}], chosen by the reasoner.")
    elif leaned is not None and reasoning is not None:
        chosen, runner_up, second = _answer_lead(reasoning)
        lead = (
            f" (option probability {chosen:.2f} against {second:.2f} for {runner_up}): a lead of "
            f"{chosen - second:.2f},"
            if runner_up is not None
            else ", with no option probabilities to show its lead:"
        )
        sentences.append(
            f"The reasoner leaned to {leaned.title}{lead} too close to state the defect type "
            f"(that takes a lead of {REASONER_TYPE_LEAD:.2f})."
        )
    if candidates:
        sentences.append(
            "Candidate types from the knowledge, ranked by how well their visual cues match the region "
            f"(low confidence, not a verdict): {'; '.join(_candidate_words(c) for c in candidates)}."
        )
    if reasoning is None and skipped_reasoner:
        sentences.append(skipped_reasoner_sentence(anomaly))
    if reasoning is not None and question is not None:
        if reasoning.answer is not None:
            option = question.options.get(reasoning.answer, "")
            model = reasoning.trace.model_id
            if reasoning.trace.precision == "int8":  # moves a few answers against fp32: say so
                model += ", int8"
            if reasoning.trace.answer_source == "exemplars":
                own = reasoning.trace.model_answer
                alone = f" (the model alone leaned to {own})" if own and own != reasoning.answer else ""
                sentences.append(
                    f"Answer {reasoning.answer} ({option.rstrip('.')}) follows the product's labelled "
                    f"exemplars{alone}; latent reasoning ran on {model}."
                )
            elif reasoning.trace.answer_source == "verdict":
                own = reasoning.trace.model_answer or ""
                own_option = question.options.get(own, "").rstrip(".")
                sentences.append(
                    f"Latent reasoning ({model}) leaned to {own} ({own_option}), which contradicts the vision "
                    f"expert's confident score; the answer is the most likely option that does not: "
                    f"{reasoning.answer} ({option.rstrip('.')})."
                )
            else:
                ended = option if not option or option[-1] in ".!?" else option + "."
                sentences.append(f"Latent reasoning ({model}) answered {reasoning.answer}. {ended}".rstrip())
        trace = reasoning.trace
        why = {"threshold": " (the reward reached its threshold)", "plateau": " (the reward stopped rising)"}
        iterations = _count(len(trace.iterations), "latent iteration", "latent iterations")
        patches = _count(len(trace.kept), "visual patch", "visual patches")
        sentences.append(
            f"Reward {trace.initial_reward:.3f} -> {trace.final_reward:.3f} over {iterations}"
            f"{why.get(trace.stopped, '')}, {patches} kept."
        )
    opinion = reasoner_opinion(verdict, anomaly, reasoning, asked)
    if opinion is not None:  # after what the reasoner answered, as the rule that overrides it
        sentences.append(opinion)
    if degraded:
        sentences.append(f"Parts skipped: {', '.join(degraded)}.")
    return " ".join(sentences)


def _without_references(degraded: list[str], category: str | None, similarity: float | None) -> str:
    """Why nothing calibrated the score, and what the user can do about it."""
    register = "give normal reference images or register it (riad product add, or the register_product tool)"
    if "unknown_product" in degraded:
        nearest = (
            f" (the nearest is at similarity {similarity:.2f}, below the acceptance threshold)"
            if similarity is not None
            else " (none is registered)"
        )
        return (
            f"No category was named and the image matches no registered product{nearest}: name its "
            f"category, or {register}. Without references no calibrated comparison is possible: the "
            "verdict stays uncertain whatever the reasoner's answer."
        )
    unknown = ""
    if category is not None and "no_knowledge_for_category" in degraded:
        unknown = f" '{category}' is neither a registered product nor a knowledge category: {register}."
    return (
        "No normal reference images were given, so no calibrated comparison was possible: "
        f"the verdict stays uncertain whatever the reasoner's answer.{unknown}"
    )


def _candidate_words(candidate: CandidateType) -> str:
    """'Synthetic washer: Scratch (matches elongated; not darker)': the region's attributes its cues name,
    and those where they name others."""
    said = []
    if candidate.agreed:
        said.append(f"matches {', '.join(candidate.agreed)}")
    if candidate.clashed:
        said.append(f"not {', '.join(candidate.clashed)}")
    return f"{candidate.title} ({'; '.join(said) or 'no cue to compare'})"


def build_report(
    request: InspectionRequest,
    image_size: tuple[int, int],
    working_size: tuple[int, int],
    category: str | None,
    category_guessed: bool,
    knowledge: list[KnowledgeHit],
    anomaly: ExpertFindings | None,
    reasoning: ReasoningResult | None,
    degraded: list[str],
    timings_ms: dict[str, float],
    models: dict[str, str],
    category_similarity: float | None = None,
    typing: ExemplarTyping | None = None,
    candidates: Sequence[CandidateType] | None = None,
    reasoner_echoes: bool = False,
) -> InspectionReport:
    """Assemble the :class:`InspectionReport` from the graph's parts.

    ``anomaly`` carries the heatmap PNG only when the request asked for one. ``candidates``: the
    category's defect entries ranked by their cues (:func:`~riad_agent.knowledge.cues.rank_by_cues`);
    None ranks the defect hits among ``knowledge``. ``reasoner_echoes``: the configured reasoner only
    repeats the expert's verdict (:func:`echoes_expert`), so it was not wanted for an unclear one.
    """
    question = request.question
    score = anomaly_score(anomaly, reasoning, question)
    # without references, or with a query the references cannot judge, the score is no calibrated
    # comparison: never a firm verdict
    unjudged = anomaly is None or bool(anomaly.notes)
    verdict: Verdict = "uncertain" if unjudged else verdict_for(score)
    # references that disagree may hide a defect: only an anomalous verdict survives them
    if anomaly is not None and anomaly.cautions and verdict == "normal":
        verdict = "uncertain"
    regions: list[Region] = []
    factor_x = image_size[0] / max(working_size[0], 1)
    factor_y = image_size[1] / max(working_size[1], 1)
    if anomaly is not None:
        regions = scale_regions(anomaly.regions, factor_x, factor_y, image_size)
    if verdict != "anomalous":
        # a place is never stated as more anomalous than the image's own verdict allows (the pixel
        # threshold is calibrated apart from the image's: "uncertain 0.48" sat beside a region at 0.70)
        regions = [region.model_copy(update={"score": min(region.score, score)}) for region in regions]
    # the regions in words (working-copy pixels told in the original's), unless the part is normal
    description = (
        anomaly.description.rescaled(factor_x, factor_y)
        if anomaly is not None and anomaly.description is not None and verdict != "normal"
        else None
    )
    answer = reasoning.answer if reasoning is not None and question is not None else None
    # a normal part has no defect type, whatever option the reasoner picked or the exemplars suggest;
    # the reasoner's pick is a type only with a clear lead (REASONER_TYPE_LEAD), else a lean
    named = None if verdict == "normal" else _defect_from_answer(reasoning, question, knowledge)
    clear = False
    if named is not None and reasoning is not None:
        chosen, _, second = _answer_lead(reasoning)
        # an answer taken from the labelled exemplars carries their evidence, not the model's lead
        clear = reasoning.trace.answer_source == "exemplars" or chosen - second >= REASONER_TYPE_LEAD
    defect = named if clear else None
    # an answer the confident verdict forced is not the model's lean: its sentence says what happened
    forced = reasoning is not None and reasoning.trace.answer_source == "verdict"
    leaned = named if not clear and not forced else None
    typing = None if verdict == "normal" else typing
    # nothing states a type on a flagged part: the knowledge's best cue matches, as a lean
    untyped = defect is None and verdict != "normal" and (typing is None or typing.defect_type is None)
    if candidates is None:
        strongest = description.strongest if description is not None else None
        candidates = rank_by_cues(knowledge, strongest)
    shown = list(candidates[:KNOWLEDGE_CANDIDATES]) if untyped else []
    explanation = explanation_text(
        verdict,
        score,
        regions,
        image_size,
        anomaly,
        reasoning,
        question or DEFAULT_QUESTION,
        defect,
        degraded,
        description,
        typing,
        shown,
        asked=question,
        skipped_reasoner=reasoning is None
        and request.options.use_reasoner
        and not reasoner_needed(request.options, question, anomaly, reasoner_echoes)
        and not any(item.startswith("reasoner_") for item in degraded),
        leaned=leaned,
        category=category,
        category_similarity=category_similarity,
    )
    return InspectionReport(
        verdict=verdict,
        anomaly_score=score,
        category=category,
        category_guessed=category_guessed,
        category_similarity=category_similarity,
        answer=answer,
        answer_text=question.options.get(answer) if question is not None and answer else None,
        answer_agrees_with_verdict=answer_agrees(verdict, anomaly, answer, question),
        defect_type=(typing.defect_type if typing is not None and typing.defect_type else None)
        or (defect.defect_type if defect is not None else None),
        defect_description=_defect_description(description, defect, typing),
        regions=regions,
        heatmap_png=anomaly.heatmap_png if anomaly is not None and request.options.return_heatmap else None,
        explanation=explanation,
        knowledge=[
            KnowledgeCitation(
                id=hit.id,
                title=hit.title,
                category=hit.category,
                kind=hit.kind,
                defect_type=hit.defect_type,
                score=hit.score,
            )
            for hit in knowledge
        ],
        candidate_types=shown,
        trace=reasoning.trace if reasoning is not None else None,
        timings_ms=timings_ms,
        models=models,
        degraded=degraded,
        image_size=image_size,
        references=anomaly.references if anomaly is not None else 0,
        pose=anomaly.pose if anomaly is not None else None,
    )


def _defect_description(
    description: RegionDescription | None, defect: KnowledgeHit | None, typing: ExemplarTyping | None = None
) -> str | None:
    """What the defect looks like (the regions in words), its labelled look-alikes, what the chosen type is."""
    parts = []
    if description is not None and description.regions:
        parts.append(description.sentence())
    if typing is not None:
        parts.append(typing.sentence())
    if defect is not None:
        parts.append(f"{defect.title}: {defect.text}")
    return " ".join(parts) or None


def needs_review(score: float | None, threshold: float | None) -> bool:
    """Whether a human should confirm the verdict: the score is within ``threshold`` of 0.5.

    No expert score counts as 0.5 (the edge of normal); no threshold means never ask.
    """
    if threshold is None:
        return False
    return abs((0.5 if score is None else score) - 0.5) < threshold


def review_request(score: float | None) -> dict[str, Any]:
    """What a human reviewer is shown when the inspection pauses for review."""
    score = 0.5 if score is None else score
    return {
        "reason": "low confidence",
        "anomaly_score": score,
        "proposed_verdict": verdict_for(score),
        "resume_with": {"verdict": "normal|anomalous|uncertain", "note": "optional text"},
    }


def check_review(decision: object) -> dict[str, Any]:
    """The reviewer's decision, checked: a dict with a valid ``verdict`` and an optional ``note``."""
    if not isinstance(decision, dict) or decision.get("verdict") not in get_args(Verdict):
        raise RiadError("resume the review with {'verdict': 'normal' | 'anomalous' | 'uncertain'}")
    return decision


def apply_review(report: InspectionReport, review: dict[str, Any]) -> InspectionReport:
    """The report with the reviewer's verdict, and a sentence saying so (with the note, if any)."""
    note = str(review.get("note", "")).strip()
    return report.model_copy(
        update={
            "verdict": review["verdict"],
            "explanation": f"{report.explanation} Human review set the verdict to "
            f"{review['verdict']}." + (f" Note: {note}" if note else ""),
        }
    )
