"""The inspection graph: one image in, one explainable report out.

    load_inputs -> resolve_category -> expert_analysis -> [retrieve_knowledge]
                -> [latent_reasoning] -> [human_review] -> explain -> END

The nodes are in :mod:`riad_agent.graphs.nodes`, the state in :mod:`riad_agent.graphs.state`; this
module wires them. The expert runs before retrieval so that its evidence (score, where the regions
are) goes into the retrieval query. Bracketed nodes are skipped by conditional edges on booleans of
the state: retrieval unless ``search_knowledge`` (knowledge on, reachable, and the category known to
it or guessed), reasoning unless the request wants it, review unless ``needs_review``.
The caller sees ``{"request": InspectionRequest}`` in and ``{"report": InspectionReport}`` out.
"""

from __future__ import annotations

import uuid
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy

from riad_agent.components import Components, build_components
from riad_agent.errors import BackendUnavailableError, RiadError
from riad_agent.graphs import nodes
from riad_agent.graphs.checkpoints import checkpointer_from_settings, with_project_types
from riad_agent.graphs.context import bind
from riad_agent.graphs.state import InspectionInput, InspectionOutput, InspectionState
from riad_agent.schemas import InspectionReport, InspectionRequest
from riad_agent.settings import Settings

#: The nodes that report progress, in the order they run: progress fractions (MCP) count along it.
PROGRESS_STAGES: tuple[str, ...] = (
    "load_inputs",
    "recall_product",
    "resolve_category",
    "expert_analysis",
    "type_defect",
    "retrieve_knowledge",
    "latent_reasoning",
    "explain",
)


def inspection_graph() -> StateGraph[InspectionState, None, InspectionInput, InspectionOutput]:
    """The uncompiled graph: state, nodes and edges."""
    graph = StateGraph(InspectionState, input_schema=InspectionInput, output_schema=InspectionOutput)
    graph.add_node("load_inputs", nodes.load_inputs)
    graph.add_node("recall_product", nodes.recall_product)
    graph.add_node("resolve_category", nodes.resolve_category)
    graph.add_node("expert_analysis", nodes.expert_analysis)
    graph.add_node("type_defect", nodes.type_defect)
    graph.add_node(
        "retrieve_knowledge",
        nodes.retrieve_knowledge,
        retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.2, retry_on=BackendUnavailableError),
    )
    graph.add_node("latent_reasoning", nodes.latent_reasoning)
    graph.add_node("human_review", nodes.human_review)
    graph.add_node("explain", nodes.explain)

    graph.add_edge(START, "load_inputs")
    graph.add_edge("load_inputs", "recall_product")
    graph.add_edge("recall_product", "resolve_category")
    graph.add_edge("resolve_category", "expert_analysis")
    graph.add_edge("expert_analysis", "type_defect")
    graph.add_conditional_edges("type_defect", nodes.after_expert)
    graph.add_conditional_edges("retrieve_knowledge", nodes.after_knowledge)
    graph.add_conditional_edges("latent_reasoning", nodes.review_gate)
    graph.add_edge("human_review", "explain")
    graph.add_edge("explain", END)
    return graph


def build_inspection_graph(
    settings: Settings | None = None,
    *,
    components: Components | None = None,
    checkpointer: Any = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile the inspection graph. Invoke it with ``{"request": InspectionRequest(...)}`` (or its JSON).

    ``components`` overrides the parts built from ``settings``; ``checkpointer`` defaults to the one
    named in the settings (in-memory unless configured); ``False`` compiles none (a parent graph's
    or the server's is used). A given checkpointer is used with the project's types registered and
    heatmap PNGs kept in the components' blob store (:func:`with_project_types`).
    """
    if components is None:
        components = build_components(settings or Settings())
    if checkpointer is None:
        checkpointer = checkpointer_from_settings(components.settings)
    compiled = inspection_graph().compile(
        checkpointer=with_project_types(checkpointer, components.blobs) if checkpointer else None,
        name="riad-inspection",
    )
    return bind(compiled, components)


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
