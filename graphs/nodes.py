"""The inspection graph's nodes and routers: module-level functions of the state.

Each node calls one protocol (``riad_agent.protocols``) through the components bound to the graph
(:mod:`riad_agent.graphs.context`) and returns its update of the state. Routers read booleans of
the state only. Progress goes to callers streaming with ``stream_mode="custom"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.types import interrupt
from PIL import Image

from riad_agent.components import Components
from riad_agent.errors import BackendUnavailableError, ReasonerTimeoutError, RiadError
from riad_agent.evidence import ExemplarTyping, ExpertFindings, StoredPrior, request_reasoning_input
from riad_agent.explain import (
    UNCERTAIN_BAND,
    apply_review,
    build_report,
    check_review,
    needs_review,
    reasoner_needed,
    review_request,
)
from riad_agent.graphs import steps
from riad_agent.graphs.context import components_of
from riad_agent.graphs.images import open_image, remember_image
from riad_agent.graphs.state import InspectionState
from riad_agent.imaging import working_size
from riad_agent.knowledge.cues import CANDIDATE_POOL, rank_by_cues
from riad_agent.knowledge.query import build_retrieval_query
from riad_agent.products.models import Recognition
from riad_agent.protocols import KnowledgeBase, ReasoningResult
from riad_agent.reasoning.cancel import CancelToken
from riad_agent.schemas import parse_request


def _emit(event: dict[str, Any]) -> None:
    """Send a progress event to callers streaming with ``stream_mode="custom"``."""
    with contextlib.suppress(RuntimeError):  # outside a runnable context (direct node calls in tests)
        get_stream_writer()(event)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


async def load_inputs(state: InspectionState, config: RunnableConfig) -> dict[str, Any]:
    """Read and check every image once; the state keeps references to them, not pixels."""
    start = time.perf_counter()
    components = components_of(config)
    given = state["request"]
    request = parse_request(given)  # JSON input (LangGraph Server, Studio) becomes the model here
    _emit({"stage": "load_inputs"})
    image, _ = await asyncio.to_thread(remember_image, request.image, components.policy, components.blobs)
    references = [
        (await asyncio.to_thread(remember_image, ref, components.policy, components.blobs))[0]
        for ref in request.references
    ]
    update: dict[str, Any] = {
        "image": image,
        "references": references,
        "degraded": [],
        "timings_ms": {"load_inputs": _ms(start)},
    }
    if request is not given:
        update["request"] = request
    return update


async def recall_product(state: InspectionState, config: RunnableConfig) -> dict[str, Any]:
    """Without references: a registered product's stored references, named by the category or recognised.

    With no category either, the image is matched against the registered products; below the
    acceptance threshold it is an unknown product (``degraded: unknown_product``), never a guess.
    """
    request = state["request"]
    if state["references"]:
        return {}
    start = time.perf_counter()
    components = components_of(config)
    if request.category is None:
        _emit({"stage": "recall_product"})

    def recognise() -> Recognition:  # on the worker thread, only when the rule needs it
        image = open_image(state["image"], components.policy, components.blobs)
        return registry.recognise(image)

    try:
        registry = await asyncio.to_thread(components.products.get)
        names = {product.name for product in await asyncio.to_thread(registry.list)}
        choice = await asyncio.to_thread(steps.choose_product, names, request.category, recognise)
        if choice.name is None:
            if not choice.unknown:
                return {}  # a knowledge category or a new product: inspected as before
            return {"degraded": ["unknown_product"], "category_similarity": choice.similarity}
        name, similarity = choice.name, choice.similarity
        product = await asyncio.to_thread(
            steps.stored_product, registry, name, components.policy, components.blobs
        )
    except (BackendUnavailableError, OSError):
        return {"degraded": ["products_unavailable"]}
    return {
        "product": name,
        "references": product.references,
        "category": product.knowledge,
        "pose": product.pose,
        "pose_from": steps.PRODUCT_POSE if product.pose is not None else None,
        "category_guessed": similarity is not None,
        "category_similarity": similarity,
        "timings_ms": {"recall_product": _ms(start)},
    }


async def resolve_category(state: InspectionState, config: RunnableConfig) -> dict[str, Any]:
    """The canonical category, asked of the knowledge base once; decides whether to search it.

    A likely typo of a known category is the caller's error (re-raised); a name close to none is a
    new product, inspected without knowledge.
    """
    start = time.perf_counter()
    components = components_of(config)
    request = state["request"]
    product = state.get("product")
    # a registered product searches the knowledge category it links (none: no knowledge)
    category = state.get("category") if product is not None else request.category
    if not request.options.use_knowledge or (product is not None and category is None):
        return {"category": category, "knowledge": [], "search_knowledge": False}
    if category is None:  # an unnamed, unrecognised product: no knowledge of some other product
        return {"knowledge": [], "search_knowledge": False}
    _emit({"stage": "resolve_category"})  # the first call opens the knowledge base (the first run embeds it)
    try:
        knowledge: KnowledgeBase | None = await asyncio.to_thread(components.knowledge.get)
    except BackendUnavailableError:
        knowledge = None

    def near() -> tuple[str, ...]:  # a typo of a registered product's name? (only without references)
        if product is not None or state["references"]:
            return ()
        return _near_products(components, category)

    # a typo of a known category or product raises (the caller's error); the product's pose wins
    resolved = await asyncio.to_thread(
        steps.resolve_category,
        knowledge,
        category,
        state.get("pose"),
        use_knowledge=True,
        near=near,
    )
    return {
        "category": resolved.category,
        "pose": resolved.pose,
        "knowledge": [],
        "search_knowledge": not resolved.degraded,
        "degraded": resolved.degraded,
        "timings_ms": {"resolve_category": _ms(start)},
    }


def _near_products(components: Components, category: str) -> tuple[str, ...]:
    try:
        names = [product.name for product in components.products.get().list()]
    except (BackendUnavailableError, OSError):
        return ()
    return steps.near_products(names, category)


async def expert_analysis(state: InspectionState, config: RunnableConfig) -> dict[str, Any]:
    """The vision expert's map against the references; the state keeps its findings and prior key."""
    start = time.perf_counter()
    components = components_of(config)
    request = state["request"]
    threshold = components.settings.review_threshold
    if not state["references"]:
        return {
            "anomaly": None,
            "prior": None,
            "needs_review": needs_review(None, threshold),
            "degraded": ["no_references"],
        }
    _emit({"stage": "expert_analysis"})
    expert = await asyncio.to_thread(components.expert.get)
    policy, blobs = components.policy, components.blobs
    image = await asyncio.to_thread(open_image, state["image"], policy, blobs)
    references = [await asyncio.to_thread(open_image, ref, policy, blobs) for ref in state["references"]]
    declared_by = state.get("pose_from") or "knowledge"
    anomaly = await asyncio.to_thread(
        lambda: expert.analyse(image, references, pose=state.get("pose"), pose_source=declared_by)
    )
    findings = await asyncio.to_thread(ExpertFindings.of, anomaly, request.options.return_heatmap)
    prior = None
    # the prior map serves the reasoner and, on a registered product's flagged part, the defect typing
    typing_next = state.get("product") is not None and findings.score > 0.5 - UNCERTAIN_BAND

    def needed(echoes: bool) -> bool:
        return reasoner_needed(request.options, request.question, findings, echoes)

    echoes = components.reasoner_echoes_expert()
    if not echoes and needed(False) and not needed(True):
        # only a reasoner service's model can still settle it, and only now does it matter: ask it (once)
        echoes = await asyncio.to_thread(components.reasoner_echoes_expert, True)
    if typing_next or needed(echoes):
        prior = await asyncio.to_thread(lambda: blobs.put_array(anomaly.prior_map()))
    return {
        "anomaly": findings,
        "reasoner_echoes": echoes,
        "prior": prior,
        "needs_review": needs_review(findings.score, threshold),
        "models": {"expert": expert.backbone_id},
        "timings_ms": {"expert_analysis": _ms(start)},
    }


async def type_defect(state: InspectionState, config: RunnableConfig) -> dict[str, Any]:
    """The registered product's labelled defect exemplars against the strongest region, if any."""
    product, anomaly = state.get("product"), state.get("anomaly")
    if product is None or anomaly is None or not anomaly.regions or anomaly.score <= 0.5 - UNCERTAIN_BAND:
        return {}
    start = time.perf_counter()
    components = components_of(config)
    try:
        registry = await asyncio.to_thread(components.products.get)
        image = await asyncio.to_thread(open_image, state["image"], components.policy, components.blobs)
        prior = state.get("prior")
        weights = None if prior is None else await asyncio.to_thread(components.blobs.get_array, prior)
        typing = await asyncio.to_thread(steps.exemplar_typing, registry, product, image, anomaly, weights)
    except (BackendUnavailableError, OSError):
        return {"degraded": ["products_unavailable"]}
    if typing is None:  # the product has no labelled exemplars
        return {}
    _emit({"stage": "type_defect"})
    return {"typing": typing, "timings_ms": {"type_defect": _ms(start)}}


async def retrieve_knowledge(state: InspectionState, config: RunnableConfig) -> dict[str, Any]:
    """Knowledge hits for a query built from the question and the expert's evidence."""
    start = time.perf_counter()
    components = components_of(config)
    request = state["request"]
    _emit({"stage": "retrieve_knowledge"})
    knowledge = await asyncio.to_thread(components.knowledge.get)
    anomaly = state.get("anomaly")
    query = build_retrieval_query(
        question=request.question.text if request.question else None,
        options=request.question.options if request.question else None,
        category=state.get("category"),
        regions=anomaly.regions if anomaly is not None else (),
        image_size=working_size(state["image"].size),
        anomaly_score=anomaly.score if anomaly is not None else None,
        description=anomaly.description.sentence() if anomaly is not None and anomaly.description else None,
    )
    # with a category, one search also brings its other defect entries for the candidate types (the
    # first knowledge_k hits are the same: the fusion's prefetch is larger than the pool)
    category = state.get("category")
    wanted = request.options.knowledge_k
    pool = await asyncio.to_thread(
        knowledge.search, query, category, max(wanted, CANDIDATE_POOL) if category else wanted
    )
    strongest = anomaly.description.strongest if anomaly is not None and anomaly.description else None
    return {
        "knowledge": pool[:wanted],
        "candidates": rank_by_cues(pool, strongest),
        "timings_ms": {"retrieve_knowledge": _ms(start)},
    }


async def latent_reasoning(state: InspectionState, config: RunnableConfig) -> dict[str, Any]:
    """The latent reasoner on the image, the first reference, the knowledge and the expert's prior.

    An unavailable or too slow reasoner degrades the report to expert-only instead of failing; a
    too slow (or abandoned) one is also told to stop (a :class:`CancelToken` as its progress
    callback), so its worker thread ends within about one forward and frees the model. Progress
    events of a reasoner that is still running after the node has ended are dropped.
    """
    start = time.perf_counter()
    components = components_of(config)
    request = state["request"]
    _emit({"stage": "latent_reasoning"})
    try:
        reasoner = await asyncio.to_thread(components.reasoner.get)
    except BackendUnavailableError:
        return {"reasoning": None, "degraded": ["reasoner_unavailable"]}
    policy, blobs = components.policy, components.blobs
    image = await asyncio.to_thread(open_image, state["image"], policy, blobs)
    templates = [await asyncio.to_thread(open_image, ref, policy, blobs) for ref in state["references"][:1]]
    anomaly, prior = state.get("anomaly"), state.get("prior")
    evidence = None
    if anomaly is not None and prior is not None:
        prior_map = await asyncio.to_thread(blobs.get_array, prior)
        evidence = StoredPrior(anomaly.score, prior_map, tuple(anomaly.cautions), tuple(anomaly.notes))
    typing = state.get("typing")
    crops = []  # a reasoner that shows no exemplar images (the builtin model) is spared reading them
    if getattr(reasoner, "takes_exemplar_images", True):
        crops = await asyncio.to_thread(_exemplar_crops, components, typing)
    reasoning_input = request_reasoning_input(
        request, image, templates, state.get("knowledge", []), evidence, state.get("category"), typing, crops
    )
    loop = asyncio.get_running_loop()
    try:
        writer = get_stream_writer()
    except RuntimeError:
        writer = None

    ended = threading.Event()  # the node stopped waiting: the stream is no longer this reasoner's

    def write(event: dict[str, object]) -> None:  # on the loop, maybe after the node has ended
        if writer is not None and not ended.is_set():
            writer(event)

    def progress(event: dict[str, object]) -> None:  # on the reasoner's thread
        if writer is not None and not ended.is_set():
            loop.call_soon_threadsafe(write, {**event, "stage": "latent_reasoning"})

    timeout_s = components.settings.reasoner_timeout_s
    token = CancelToken(progress)
    try:
        result: ReasoningResult = await asyncio.wait_for(
            asyncio.to_thread(reasoner.reason, reasoning_input, token), timeout=timeout_s
        )
    except TimeoutError:
        token.cancel(f"no answer within reasoner_timeout_s = {timeout_s:g} s")
        return {"reasoning": None, "degraded": ["reasoner_timeout"]}
    except asyncio.CancelledError:
        token.cancel("the inspection was cancelled")
        raise
    except ReasonerTimeoutError:
        return {"reasoning": None, "degraded": ["reasoner_timeout"]}
    except BackendUnavailableError:
        return {"reasoning": None, "degraded": ["reasoner_unavailable"]}
    finally:
        ended.set()
    return {
        "reasoning": result,
        "models": _reasoner_models(reasoner.model_id, result.trace.precision),
        "timings_ms": {
            "latent_reasoning": _ms(start),
            **{f"reasoning.{key}": value for key, value in result.timings_ms.items()},
        },
    }


def _reasoner_models(model_id: str, precision: str | None) -> dict[str, str]:
    """The report's ``models`` entries of the reasoner: its id, and the precision it ran in when known."""
    return {"reasoner": model_id, **({"reasoner_precision": precision} if precision else {})}


def _exemplar_crops(components: Components, typing: ExemplarTyping | None) -> list[Image.Image | None]:
    """The regions of the exemplars ``typing`` matched (None where one cannot be read any more)."""
    if typing is None or not typing.exemplars:
        return []
    try:
        registry = components.products.get()
    except (BackendUnavailableError, OSError):
        return []
    crops: list[Image.Image | None] = []
    for exemplar in typing.exemplars:
        try:
            crops.append(registry.exemplar_crop(typing.product, exemplar))
        except (RiadError, OSError):
            crops.append(None)
    return crops


async def human_review(state: InspectionState) -> dict[str, Any]:
    """Pause for a human verdict (resume with ``Command(resume={"verdict": ..., "note": ...})``)."""
    anomaly = state.get("anomaly")
    decision = interrupt(review_request(anomaly.score if anomaly is not None else None))
    return {"review": check_review(decision)}


async def explain(state: InspectionState) -> dict[str, Any]:
    """The report from everything gathered, with the reviewer's verdict when there was a review."""
    start = time.perf_counter()
    _emit({"stage": "explain"})
    image = state["image"]
    timings = dict(state.get("timings_ms", {}))
    report = build_report(
        request=state["request"],
        image_size=image.size,
        working_size=working_size(image.size),
        category=state.get("product") or state.get("category"),
        category_guessed=state.get("category_guessed", False),
        category_similarity=state.get("category_similarity"),
        typing=state.get("typing"),
        knowledge=state.get("knowledge", []),
        candidates=state.get("candidates", []),
        anomaly=state.get("anomaly"),
        reasoning=state.get("reasoning"),
        degraded=list(dict.fromkeys(state.get("degraded", []))),
        timings_ms={**timings, "explain": _ms(start)},
        models=dict(state.get("models", {})),
        reasoner_echoes=state.get("reasoner_echoes", False),
    )
    review = state.get("review")
    if review:
        report = apply_review(report, review)
    return {"report": report}


Route = Literal["retrieve_knowledge", "latent_reasoning", "human_review", "explain"]


def review_gate(state: InspectionState) -> Literal["human_review", "explain"]:
    """Ask a human when the expert was unsure (``needs_review``)."""
    return "human_review" if state.get("needs_review", False) else "explain"


def after_knowledge(state: InspectionState) -> Literal["latent_reasoning", "human_review", "explain"]:
    """Reason when the request wants the reasoner and it can matter (:func:`reasoner_needed`: a
    question, or an expert verdict that is not clear and a reasoner that judges the image itself),
    else on to the review gate."""
    request = state["request"]
    if reasoner_needed(
        request.options, request.question, state.get("anomaly"), state.get("reasoner_echoes", False)
    ):
        return "latent_reasoning"
    return review_gate(state)


def after_expert(state: InspectionState) -> Route:
    """Search the knowledge base when ``resolve_category`` said so, else on as after retrieval."""
    return "retrieve_knowledge" if state.get("search_knowledge", False) else after_knowledge(state)
