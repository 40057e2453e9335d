"""The inspection graph wired to fake components: paths, conditional edges, degradation, review."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner

from riad_agent.components import build_components
from riad_agent.errors import ImageNotFoundError, UnknownCategoryError
from riad_agent.graphs.inspection import build_inspection_graph, run_inspection
from riad_agent.inspector import Inspector
from riad_agent.schemas import InspectionRequest
from riad_agent.settings import Settings


def _inspector(
    settings: Settings, reasoner: FakeReasoner | None = None, knowledge: FakeKnowledge | None = None
) -> Inspector:
    components = build_components(
        settings,
        knowledge=knowledge or FakeKnowledge(),
        expert=FakeExpert(),
        reasoner=reasoner or FakeReasoner(),
    )
    return Inspector(components=components)


async def test_defective_part_full_path(settings: Settings, images: dict[str, Path]) -> None:
    reasoner = FakeReasoner(answer="A")
    knowledge = FakeKnowledge()
    inspector = _inspector(settings, reasoner, knowledge)
    events: list[dict[str, Any]] = []
    report = await inspector.ainspect(
        {
            "image": str(images["bad"]),
            "category": "washer",
            "references": [str(images["ref0"]), str(images["ref1"])],
            "options": {"latent_steps": 3, "return_heatmap": True, "reasoner_when": "always"},
        },
        progress=events.append,
    )
    assert report.verdict == "anomalous" and report.anomaly_score > 0.9
    assert report.category == "synthetic/washer" and not report.category_guessed
    assert report.regions and report.regions[0].x0 < 64 < report.regions[0].x1 + 20
    assert report.heatmap_png == b"\x89PNGfake"
    assert [k.id for k in report.knowledge][:2] == ["synthetic/washer/normal", "synthetic/washer/scratch"]
    assert knowledge.searches[0][1] == "synthetic/washer"
    # no type was stated: the category's defect entries are the candidates, never the defect type
    assert [c.id for c in report.candidate_types] == ["synthetic/washer/scratch", "synthetic/washer/hole"]
    assert report.defect_type is None
    assert report.trace is not None and len(report.trace.iterations) == 3
    assert report.answer is None  # no question was asked: the default question's letter is internal
    assert report.models == {"expert": "fake-mean-diff", "reasoner": "fake-reasoner"}
    assert {"load_inputs", "expert_analysis", "latent_reasoning", "explain"} <= set(report.timings_ms)
    assert report.degraded == []
    stages = [e["stage"] for e in events]
    assert stages.index("load_inputs") < stages.index("expert_analysis") < stages.index("latent_reasoning")
    assert any(e.get("iteration") == 2 for e in events)
    call = reasoner.calls[0]
    assert call.patch_prior is not None and call.patch_prior.shape == (128, 128)
    assert len(call.templates) == 1 and call.latent_steps == 3


async def test_normal_part_and_question_answer(settings: Settings, images: dict[str, Path]) -> None:
    inspector = _inspector(settings, FakeReasoner(answer="B"))
    report = await inspector.ainspect(
        {
            "image": str(images["good"]),
            "category": "synthetic/washer",
            "references": [str(images["ref0"]), str(images["ref1"])],
            "question": {"text": "Which defect?", "options": {"A": "Scratch.", "B": "Hole.", "C": "None."}},
        }
    )
    assert report.verdict == "normal" and report.anomaly_score < 0.1
    assert report.answer == "B" and report.answer_text == "Hole."
    assert report.defect_type is None  # the reasoner chose a defect, but a normal part carries no type
    assert report.regions == []


async def test_without_references_the_expert_is_skipped(settings: Settings, images: dict[str, Path]) -> None:
    report = await _inspector(settings, FakeReasoner(answer="A")).ainspect({"image": str(images["bad"])})
    assert "no_references" in report.degraded
    # no expert: the reasoner's P(defect) for the default question is the score
    assert report.anomaly_score == pytest.approx(0.8)
    assert report.verdict == "uncertain"  # an uncalibrated guess never gives a firm verdict
    # no name, no references and nothing registered: an unknown product, never a guess from text
    assert not report.category_guessed and "unknown_product" in report.degraded


@pytest.mark.parametrize(
    ("reasoner", "flag"),
    [(FakeReasoner(fail=True), "reasoner_unavailable"), (FakeReasoner(delay_s=1.0), "reasoner_timeout")],
)
async def test_reasoner_failure_degrades_to_expert_only(
    tmp_path: Path, images: dict[str, Path], reasoner: FakeReasoner, flag: str
) -> None:
    settings = Settings(data_dir=tmp_path / "data", reasoner_timeout_s=0.3)
    report = await _inspector(settings, reasoner).ainspect(
        {
            "image": str(images["bad"]),
            "references": [str(images["ref0"])],
            "category": "washer",
            "options": {"reasoner_when": "always"},
        }
    )
    assert flag in report.degraded
    assert report.trace is None
    assert report.verdict == "anomalous"  # the expert still decides


async def test_unknown_categories(settings: Settings, images: dict[str, Path]) -> None:
    knowledge = FakeKnowledge()
    inspector = _inspector(settings, knowledge=knowledge)
    with pytest.raises(UnknownCategoryError):
        await inspector.ainspect({"image": str(images["good"]), "category": "hazelnutt"})
    report = await inspector.ainspect(
        {"image": str(images["good"]), "category": "gearbox", "references": [str(images["ref0"])]}
    )
    assert "no_knowledge_for_category" in report.degraded
    assert report.knowledge == [] and knowledge.searches == []
    assert report.category == "gearbox"


async def test_knowledge_and_reasoner_can_be_switched_off(
    settings: Settings, images: dict[str, Path]
) -> None:
    knowledge, reasoner = FakeKnowledge(), FakeReasoner()
    report = await _inspector(settings, reasoner, knowledge).ainspect(
        {
            "image": str(images["bad"]),
            "references": [str(images["ref0"])],
            "options": {"use_knowledge": False, "use_reasoner": False},
        }
    )
    assert knowledge.searches == [] and reasoner.calls == []
    assert report.knowledge == [] and report.trace is None and report.verdict == "anomalous"


async def test_regions_are_in_original_pixels(settings: Settings, big_images: dict[str, Path]) -> None:
    report = await _inspector(settings).ainspect(
        {
            "image": str(big_images["big"]),
            "references": [str(big_images["big_ref"])],
            "options": {"use_reasoner": False},
        }
    )
    assert report.image_size == (2048, 1536)
    top = report.regions[0]
    # the scratch is drawn at x 30%-45%, y 35%-40% of the image
    assert 0.25 * 2048 < top.x0 < 0.35 * 2048 and 0.40 * 2048 < top.x1 < 0.5 * 2048
    assert 0.3 * 1536 < top.y0 < 0.4 * 1536


async def test_bad_image_raises_typed_error(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError):
        await _inspector(settings).ainspect({"image": str(tmp_path / "missing.png")})


async def test_human_review_interrupts_and_resumes(tmp_path: Path, images: dict[str, Path]) -> None:
    settings = Settings(data_dir=tmp_path / "data", review_threshold=0.5)  # always unsure enough to ask
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=FakeExpert(), reasoner=FakeReasoner()
    )
    graph = build_inspection_graph(components=components, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "review-1"}}
    request = InspectionRequest(image=str(images["bad"]), references=[str(images["ref0"])])
    state = await graph.ainvoke({"request": request}, config=config)
    assert "report" not in state
    interrupts = state["__interrupt__"]
    assert interrupts[0].value["proposed_verdict"] == "anomalous"
    state = await graph.ainvoke(Command(resume={"verdict": "normal", "note": "dust, wiped"}), config=config)
    report = state["report"]
    assert report.verdict == "normal"
    assert "Human review set the verdict to normal. Note: dust, wiped" in report.explanation


async def test_sqlite_checkpointer_runs_the_graph(tmp_path: Path, images: dict[str, Path]) -> None:
    from riad_agent.graphs.checkpoints import open_async_checkpointer

    settings = Settings(data_dir=tmp_path / "data", checkpointer="sqlite")
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=FakeExpert(), reasoner=FakeReasoner()
    )
    async with open_async_checkpointer(settings) as saver:
        graph = build_inspection_graph(components=components, checkpointer=saver)
        report = await run_inspection(
            graph, InspectionRequest(image=str(images["bad"]), references=[str(images["ref0"])]), "t1"
        )
        assert report.verdict == "anomalous"
        snapshot = await graph.aget_state({"configurable": {"thread_id": "t1"}})
        assert snapshot.values["report"] == report
    assert (tmp_path / "data" / "checkpoints.sqlite").is_file()


async def test_the_knowledge_pose_reaches_the_expert_and_the_report(
    settings: Settings, images: dict[str, Path]
) -> None:
    expert = FakeExpert()
    components = build_components(settings, knowledge=FakeKnowledge(), expert=expert, reasoner=FakeReasoner())
    inspector = Inspector(components=components)
    request = {
        "image": str(images["bad"]),
        "references": [str(images["ref0"])],
        "options": {"use_reasoner": False},
    }
    report = await inspector.ainspect({**request, "category": "hazelnut"})
    assert expert.last_pose == "free"
    assert "Compared with 1 normal reference; pose: free (knowledge)." in report.explanation
    assert report.references == 1 and report.pose == "free (knowledge)"
    await inspector.ainspect({**request, "category": "washer"})
    assert expert.last_pose is None  # no pose declared: the expert infers it


class _UnfitExpert(FakeExpert):
    """Says it cannot judge the image, as the real expert does for a query of another shape."""

    def analyse(
        self, image: Any, references: Any, *, pose: Any = None, pose_source: str = "knowledge"
    ) -> Any:
        anomaly = super().analyse(image, references, pose=pose, pose_source=pose_source)
        anomaly.score, anomaly.regions = 0.5, []
        anomaly.notes = ["the image's aspect ratio 4.00 does not fit the references' 1.00"]
        return anomaly


async def test_an_image_the_expert_cannot_judge_is_uncertain(
    settings: Settings, images: dict[str, Path]
) -> None:
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=_UnfitExpert(), reasoner=FakeReasoner(answer="A")
    )
    report = await Inspector(components=components).ainspect(
        {"image": str(images["bad"]), "references": [str(images["ref0"])], "category": "washer"}
    )
    assert report.verdict == "uncertain" and report.regions == []
    assert "could not judge this image: the image's aspect ratio 4.00" in report.explanation


class _BorderlineExpert(FakeExpert):
    """Scores every image 0.48: inside the uncertain band, with references."""

    def analyse(
        self, image: Any, references: Any, *, pose: Any = None, pose_source: str = "knowledge"
    ) -> Any:
        anomaly = super().analyse(image, references, pose=pose, pose_source=pose_source)
        anomaly.score = 0.48
        return anomaly


class _EchoingReasoner(FakeReasoner):
    """The builtin model's id: its answer to "any defect?" is the expert's score read back."""

    model_id = "riad-builtin-v1"


async def test_a_reasoner_that_repeats_the_expert_is_not_run_for_an_unclear_verdict(
    settings: Settings, images: dict[str, Path]
) -> None:
    """An uncertain score with references: a reasoner that judges the image runs, the builtin does not
    (its answer would be the expert's score again); asked a question, or told 'always', it runs."""
    request = {"image": str(images["bad"]), "references": [str(images["ref0"])], "category": "washer"}

    def inspector(reasoner: FakeReasoner) -> Inspector:
        components = build_components(
            settings, knowledge=FakeKnowledge(), expert=_BorderlineExpert(), reasoner=reasoner
        )
        return Inspector(components=components)

    judging = FakeReasoner(answer="A")
    report = await inspector(judging).ainspect(request)
    assert report.verdict == "uncertain" and len(judging.calls) == 1 and report.trace is not None
    assert (
        "The latent reasoner leans anomalous (P(defect) 0.80); the verdict stays uncertain"
        in report.explanation
    )
    echoing = _EchoingReasoner(answer="A")
    report = await inspector(echoing).ainspect(request)
    assert report.verdict == "uncertain" and echoing.calls == [] and report.trace is None
    assert "latent_reasoning" not in report.timings_ms
    assert (
        "The latent reasoner was not run: the builtin model's answer to \"any defect?\" repeats the expert's score"
        in (report.explanation)
    )
    forced = await inspector(echoing).ainspect({**request, "options": {"reasoner_when": "always"}})
    assert len(echoing.calls) == 1 and forced.trace is not None
    assert (
        "The latent reasoner leans anomalous (P(defect) 0.80), but the builtin model's answer repeats the expert's "
        "score rather than judging the image, so it is no further evidence; the verdict stays uncertain."
        in forced.explanation
    )
    question = {"text": "Which defect?", "options": {"A": "Scratch.", "B": "Hole."}}
    asked = await inspector(echoing).ainspect({**request, "question": question})
    assert len(echoing.calls) == 2 and asked.answer == "A"
    # without references the reasoner's P(defect) is all there is: it runs, echoing or not
    alone = await inspector(echoing).ainspect({"image": str(images["bad"])})
    assert len(echoing.calls) == 3 and alone.trace is not None


async def test_a_reasoner_service_is_asked_its_model_before_its_first_unclear_verdict(
    settings: Settings, images: dict[str, Path]
) -> None:
    """A service serving the builtin: its first unclear verdict asks ``/readyz`` (one GET) and is not
    reasoned; nothing is asked for a clear one."""
    import httpx

    from riad_agent.models.builtin.loading import BUILTIN_ID
    from riad_agent.serving.client import HttpReasoner

    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json={"status": "ok", "ready": True, "model_id": BUILTIN_ID})

    remote = HttpReasoner("http://reasoner.test", transport=httpx.MockTransport(handle))
    components = build_components(settings, knowledge=FakeKnowledge(), expert=FakeExpert(), reasoner=remote)
    clear = await Inspector(components=components).ainspect(
        {"image": str(images["good"]), "references": [str(images["ref0"])], "category": "washer"}
    )
    assert clear.verdict == "normal" and calls == []
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=_BorderlineExpert(), reasoner=remote
    )
    report = await Inspector(components=components).ainspect(
        {"image": str(images["bad"]), "references": [str(images["ref0"])], "category": "washer"}
    )
    assert report.verdict == "uncertain" and report.trace is None and calls == ["/readyz"]
    assert "The latent reasoner was not run" in report.explanation


def test_progress_stages_are_the_graphs_order() -> None:
    """PROGRESS_STAGES (the MCP progress fractions count along it) lists the nodes in the order they run."""
    import graphlib

    from riad_agent.graphs.inspection import PROGRESS_STAGES, inspection_graph

    drawn = inspection_graph().compile().get_graph()
    order = graphlib.TopologicalSorter()
    for edge in drawn.edges:
        order.add(edge.target, edge.source)
    ran = [node for node in order.static_order() if node not in ("__start__", "__end__", "human_review")]
    assert list(PROGRESS_STAGES) == ran


async def test_clear_expert_verdict_skips_the_reasoner(settings: Settings, images: dict[str, Path]) -> None:
    """Given references and no question, a clear expert verdict is final: the reasoner is not run."""
    reasoner = FakeReasoner()
    report = await _inspector(settings, reasoner).ainspect(
        {
            "image": str(images["bad"]),
            "category": "washer",
            "references": [str(images["ref0"]), str(images["ref1"])],
        }
    )
    assert report.verdict == "anomalous" and report.trace is None and reasoner.calls == []
    assert "latent_reasoning" not in report.timings_ms and report.degraded == []
    assert "latent reasoner was not run" in report.explanation


async def test_question_or_unclear_expert_runs_the_reasoner(
    settings: Settings, images: dict[str, Path]
) -> None:
    reasoner = FakeReasoner(answer="B")
    question = {"text": "Which defect?", "options": {"A": "Scratch.", "B": "Hole."}}
    asked = await _inspector(settings, reasoner).ainspect(
        {
            "image": str(images["good"]),
            "category": "washer",
            "references": [str(images["ref0"])],
            "question": question,
        }
    )
    assert asked.trace is not None and asked.answer == "B"
    # no references: the expert cannot judge, so the reasoner gives its opinion (the verdict stays uncertain)
    alone = await _inspector(settings, FakeReasoner(answer="A")).ainspect({"image": str(images["bad"])})
    assert alone.trace is not None and alone.verdict == "uncertain"
    off = await _inspector(settings, FakeReasoner()).ainspect(
        {"image": str(images["bad"]), "options": {"use_reasoner": False}}
    )
    assert off.trace is None and "was not run" not in off.explanation


async def test_an_asked_answer_that_contradicts_the_verdict_is_said_and_the_expert_decides(
    settings: Settings, images: dict[str, Path]
) -> None:
    options = {"A": "A scratch.", "B": "A hole.", "C": "No defect."}
    question = {"text": "What kind of defect is on the washer?", "options": options}
    base = {"category": "washer", "references": [str(images["ref0"])], "question": question}
    report = await _inspector(settings, FakeReasoner(answer="C")).ainspect(
        {**base, "image": str(images["bad"])}
    )
    assert report.verdict == "anomalous" and report.answer == "C"  # the answer stays the reasoner's
    assert report.answer_agrees_with_verdict is False
    assert "answer: C (unlike the verdict, which follows the expert)" in report.summary()
    assert (
        "The answer (C. No defect) says the part is anomalous" not in report.explanation
        and "The answer (C. No defect) says the part is normal, unlike the verdict; the verdict follows "
        "the vision expert"
        in report.explanation
    )
    agreeing = await _inspector(settings, FakeReasoner(answer="A")).ainspect(
        {**base, "image": str(images["bad"])}
    )
    assert "The answer (" not in agreeing.explanation and agreeing.answer_agrees_with_verdict is True
    assert "unlike the verdict" not in agreeing.summary()
    named = await _inspector(settings, FakeReasoner(answer="B")).ainspect(
        {**base, "image": str(images["good"])}
    )
    assert named.verdict == "normal" and named.answer_agrees_with_verdict is False
    assert "The answer (B. A hole) says the part is anomalous, unlike the verdict" in named.explanation


async def test_reasoner_disagreeing_with_the_expert_is_said_and_the_expert_decides(
    settings: Settings, images: dict[str, Path]
) -> None:
    report = await _inspector(settings, FakeReasoner(answer="B")).ainspect(
        {
            "image": str(images["bad"]),
            "category": "washer",
            "references": [str(images["ref0"])],
            "options": {"reasoner_when": "always"},
        }
    )
    assert report.verdict == "anomalous"
    assert (
        "latent reasoner disagrees (P(defect) 0.20); the verdict follows the vision expert"
        in report.explanation
    )
