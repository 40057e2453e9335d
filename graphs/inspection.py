"""The inspection graph: one image in, one explainable report out.

    load_inputs -> resolve_category -> expert_analysis -> [retrieve_knowledge]
                -> [latent_reasoning] -> [human_review] -> explain -> END

Every node is a short async function that calls one protocol (``riad_agent.protocols``) through the
:class:`~riad_agent.components.Components` it closes over and writes its result into the state.
The expert runs before retrieval so that its evidence (score, where the regions are) goes into the
retrieval query. Bracketed nodes are skipped by conditional edges: retrieval when knowledge is off or
the knowledge base has nothing for the category, reasoning when it is off, review unless enabled and unsure.
A reasoner that is unavailable or too slow degrades the report to expert-only instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import operator
import time
import uuid
from typing import Annotated, Any, Literal, TypedDict

import numpy as np
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy, interrupt
from PIL import Image

from riad_agent.components import Components, build_components
from riad_agent.errors import (
    BackendUnavailableError,
    ReasonerTimeoutError,
    RiadError,
    UnknownCategoryError,
)
from riad_agent.explain import DEFAULT_QUESTION, build_report, verdict_for
from riad_agent.imaging import load_image
from riad_agent.knowledge.query import build_retrieval_query
from riad_agent.protocols import AnomalyMap, ReasoningInput, ReasoningResult
from riad_agent.schemas import InspectionReport, InspectionRequest, KnowledgeHit
from riad_agent.settings import Settings

#: Images are kept in the state as a working copy whose longest side is at most this many pixels;
#: regions are mapped back to the original size in the report.
WORKING_MAX_SIDE = 1024


def _merge(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    return {**(left or {}), **(right or {})}


class InspectionState(TypedDict, total=False):
    """What the nodes read and write. Only serialisable values (checkpointers store it)."""

    request: InspectionRequest
    image: np.ndarray
    image_size: tuple[int, int]
    references: list[np.ndarray]
    category: str | None
    category_guessed: bool
    knowledge: list[KnowledgeHit]
    anomaly: AnomalyMap | None
    reasoning: ReasoningResult | None
    asked_default: bool
    review: dict[str, Any] | None
    degraded: Annotated[list[str], operator.add]
    timings_ms: Annotated[dict[str, float], _merge]
    models: Annotated[dict[str, str], _merge]
    report: InspectionReport


_VERDICTS = ("normal", "anomalous", "uncertain")
#: A node: ``async def node(state) -> dict`` (typed loosely because LangGraph's overloads match by
#: parameter name, which a ``Callable`` alias cannot express).
Node = Any


def _emit(event: dict[str, Any]) -> None:
    """Send a progress event to callers streaming with ``stream_mode="custom"``."""
    with contextlib.suppress(RuntimeError):  # outside a runnable context (direct node calls in tests)
        get_stream_writer()(event)


def _working_copy(image: Image.Image) -> np.ndarray:
    width, height = image.size
    scale = WORKING_MAX_SIDE / max(width, height)
    if scale < 1.0:
        image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8).copy()


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def make_nodes(components: Components) -> dict[str, Node]:
    """The graph's nodes, closed over the components they call."""

    async def load_inputs(state: InspectionState) -> dict[str, Any]:
        start = time.perf_counter()
        request = state["request"]
        _emit({"stage": "load_inputs"})
        query = await asyncio.to_thread(load_image, request.image, components.policy)
        references = [
            _working_copy((await asyncio.to_thread(load_image, ref, components.policy)).image)
            for ref in request.references
        ]
        return {
            "image": _working_copy(query.image),
            "image_size": query.size,
            "references": references,
            "degraded": [],
            "timings_ms": {"load_inputs": _ms(start)},
        }

    async def resolve_category(state: InspectionState) -> dict[str, Any]:
        start = time.perf_counter()
        request = state["request"]
        category = request.category
        degraded: list[str] = []
        if not request.options.use_knowledge:
            return {"category": category, "category_guessed": False, "knowledge": []}
        try:
            knowledge = await asyncio.to_thread(components.knowledge.get)
        except BackendUnavailableError:
            return {"category": category, "knowledge": [], "degraded": ["knowledge_unavailable"]}
        if category is not None:
            try:
                category = await asyncio.to_thread(knowledge.resolve_category, category)
            except UnknownCategoryError:
                known = await asyncio.to_thread(knowledge.categories)
                short = {name.split("/")[-1] for name in known} | set(known)
                if difflib.get_close_matches(category, sorted(short), n=1, cutoff=0.75):
                    raise  # a typo of a known category: tell the caller instead of guessing
                degraded.append("no_knowledge_for_category")
        return {
            "category": category,
            "category_guessed": False,
            "knowledge": [],
            "degraded": degraded,
            "timings_ms": {"resolve_category": _ms(start)},
        }

    async def retrieve_knowledge(state: InspectionState) -> dict[str, Any]:
        start = time.perf_counter()
        request = state["request"]
        _emit({"stage": "retrieve_knowledge"})
        knowledge = components.knowledge.get()
        anomaly = state.get("anomaly")
        height, width = state["image"].shape[:2]
        query = build_retrieval_query(
            question=request.question.text if request.question else None,
            options=request.question.options if request.question else None,
            category=state.get("category"),
            regions=anomaly.regions if anomaly is not None else (),
            image_size=(width, height),
            anomaly_score=anomaly.score if anomaly is not None else None,
        )
        hits = await asyncio.to_thread(
            knowledge.search, query, state.get("category"), request.options.knowledge_k
        )
        update: dict[str, Any] = {"knowledge": hits, "timings_ms": {"retrieve_knowledge": _ms(start)}}
        if state.get("category") is None and hits:
            update["category"] = hits[0].category
            update["category_guessed"] = True
        return update

    async def expert_analysis(state: InspectionState) -> dict[str, Any]:
        start = time.perf_counter()
        if not state["references"]:
            return {"anomaly": None, "degraded": ["no_references"]}
        _emit({"stage": "expert_analysis"})
        expert = await asyncio.to_thread(components.expert.get)
        image = Image.fromarray(state["image"])
        references = [Image.fromarray(ref) for ref in state["references"]]
        anomaly = await asyncio.to_thread(expert.analyse, image, references, state.get("category"))
        return {
            "anomaly": anomaly,
            "models": {"expert": expert.backbone_id},
            "timings_ms": {"expert_analysis": _ms(start)},
        }

    async def latent_reasoning(state: InspectionState) -> dict[str, Any]:
        start = time.perf_counter()
        request = state["request"]
        _emit({"stage": "latent_reasoning"})
        try:
            reasoner = await asyncio.to_thread(components.reasoner.get)
        except BackendUnavailableError:
            return {"reasoning": None, "degraded": ["reasoner_unavailable"]}
        anomaly = state.get("anomaly")
        reasoning_input = ReasoningInput(
            image=Image.fromarray(state["image"]),
            question=request.question or DEFAULT_QUESTION,
            knowledge=state.get("knowledge", []),
            templates=[Image.fromarray(ref) for ref in state["references"][:1]],
            patch_prior=anomaly.prior_map() if anomaly is not None else None,
            image_score=anomaly.score if anomaly is not None else None,
            category=state.get("category"),
            latent_steps=request.options.latent_steps,
            latent_tokens=request.options.latent_tokens,
            inject_patches=request.options.inject_patches,
            seed=request.options.seed,
        )
        loop = asyncio.get_running_loop()
        try:
            writer = get_stream_writer()
        except RuntimeError:
            writer = None

        def progress(event: dict[str, object]) -> None:
            if writer is not None:
                loop.call_soon_threadsafe(writer, {**event, "stage": "latent_reasoning"})

        try:
            result: ReasoningResult = await asyncio.wait_for(
                asyncio.to_thread(reasoner.reason, reasoning_input, progress),
                timeout=components.settings.reasoner_timeout_s,
            )
        except (TimeoutError, ReasonerTimeoutError):
            return {"reasoning": None, "degraded": ["reasoner_timeout"]}
        except BackendUnavailableError:
            return {"reasoning": None, "degraded": ["reasoner_unavailable"]}
        return {
            "reasoning": result,
            "asked_default": request.question is None,
            "models": {"reasoner": reasoner.model_id},
            "timings_ms": {
                "latent_reasoning": _ms(start),
                **{f"reasoning.{key}": value for key, value in result.timings_ms.items()},
            },
        }

    async def human_review(state: InspectionState) -> dict[str, Any]:
        anomaly = state.get("anomaly")
        score = anomaly.score if anomaly is not None else 0.5
        decision = interrupt(
            {
                "reason": "low confidence",
                "anomaly_score": score,
                "proposed_verdict": verdict_for(score),
                "resume_with": {"verdict": "normal|anomalous|uncertain", "note": "optional text"},
            }
        )
        if not isinstance(decision, dict) or decision.get("verdict") not in _VERDICTS:
            raise RiadError("resume the review with {'verdict': 'normal' | 'anomalous' | 'uncertain'}")
        return {"review": decision}

    async def explain(state: InspectionState) -> dict[str, Any]:
        start = time.perf_counter()
        _emit({"stage": "explain"})
        height, width = state["image"].shape[:2]
        timings = dict(state.get("timings_ms", {}))
        report = build_report(
            request=state["request"],
            image_size=state["image_size"],
            working_size=(width, height),
            category=state.get("category"),
            category_guessed=state.get("category_guessed", False),
            knowledge=state.get("knowledge", []),
            anomaly=state.get("anomaly"),
            reasoning=state.get("reasoning"),
            asked_default=state.get("asked_default", False),
            degraded=list(dict.fromkeys(state.get("degraded", []))),
            timings_ms={**timings, "explain": _ms(start)},
            models=dict(state.get("models", {})),
        )
        review = state.get("review")
        if review:
            note = str(review.get("note", "")).strip()
            report = report.model_copy(
                update={
                    "verdict": review["verdict"],
                    "explanation": f"{report.explanation} Human review set the verdict to "
                    f"{review['verdict']}." + (f" Note: {note}" if note else ""),
                }
            )
        return {"report": report}

    return {
        "load_inputs": load_inputs,
        "resolve_category": resolve_category,
        "retrieve_knowledge": retrieve_knowledge,
        "expert_analysis": expert_analysis,
        "latent_reasoning": latent_reasoning,
        "human_review": human_review,
        "explain": explain,
    }


def _wants_knowledge(state: InspectionState) -> bool:
    degraded = state.get("degraded", [])
    return (
        state["request"].options.use_knowledge
        and "knowledge_unavailable" not in degraded
        and "no_knowledge_for_category" not in degraded
    )


def _wants_reasoning(state: InspectionState) -> bool:
    return state["request"].options.use_reasoner


def build_inspection_graph(
    settings: Settings | None = None,
    *,
    components: Components | None = None,
    checkpointer: Any = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile the inspection graph. Invoke it with ``{"request": InspectionRequest(...)}``.

    ``components`` overrides the parts built from ``settings``; ``checkpointer`` defaults to the one
    named in the settings (in-memory unless configured).
    """
    if components is None:
        components = build_components(settings or Settings())
    settings = components.settings
    nodes = make_nodes(components)
    retry_backend = RetryPolicy(max_attempts=3, initial_interval=0.2, retry_on=BackendUnavailableError)
    review_threshold = settings.review_threshold

    def review_gate(state: InspectionState) -> Literal["human_review", "explain"]:
        if review_threshold is None:
            return "explain"
        anomaly = state.get("anomaly")
        score = anomaly.score if anomaly is not None else 0.5
        return "human_review" if abs(score - 0.5) < review_threshold else "explain"

    graph = StateGraph(InspectionState)
    graph.add_node("load_inputs", nodes["load_inputs"])
    graph.add_node("resolve_category", nodes["resolve_category"])
    graph.add_node("retrieve_knowledge", nodes["retrieve_knowledge"], retry_policy=retry_backend)
    graph.add_node("expert_analysis", nodes["expert_analysis"])
    graph.add_node("latent_reasoning", nodes["latent_reasoning"])
    graph.add_node("human_review", nodes["human_review"])
    graph.add_node("explain", nodes["explain"])

    def after_expert(state: InspectionState) -> str:
        if _wants_knowledge(state):
            return "retrieve_knowledge"
        return after_knowledge(state)

    def after_knowledge(state: InspectionState) -> str:
        return "latent_reasoning" if _wants_reasoning(state) else review_gate(state)

    graph.add_edge(START, "load_inputs")
    graph.add_edge("load_inputs", "resolve_category")
    graph.add_edge("resolve_category", "expert_analysis")
    graph.add_conditional_edges(
        "expert_analysis", after_expert, ["retrieve_knowledge", "latent_reasoning", "human_review", "explain"]
    )
    graph.add_conditional_edges(
        "retrieve_knowledge", after_knowledge, ["latent_reasoning", "human_review", "explain"]
    )
    graph.add_conditional_edges("latent_reasoning", review_gate, ["human_review", "explain"])
    graph.add_edge("human_review", "explain")
    graph.add_edge("explain", END)

    if checkpointer is None:
        from riad_agent.graphs.checkpoints import checkpointer_from_settings

        checkpointer = checkpointer_from_settings(settings)
    return graph.compile(checkpointer=checkpointer or None, name="riad-inspection")


async def run_inspection(
    graph: CompiledStateGraph[Any, Any, Any, Any], request: InspectionRequest, thread_id: str | None = None
) -> InspectionReport:
    """Run one inspection to its report. Raises :class:`RiadError` subclasses only for bad input."""
    config: RunnableConfig = {"configurable": {"thread_id": thread_id or uuid.uuid4().hex}}
    state = await graph.ainvoke({"request": request}, config=config)
    if "report" not in state:
        raise RiadError("the inspection paused for human review; resume it with Command(resume=...)")
    report: InspectionReport = state["report"]
    return report
