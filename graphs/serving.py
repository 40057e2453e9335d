"""Graphs for ``langgraph dev`` / LangGraph Server (see ``langgraph.json``).

Settings come from the environment (``RIAD_*``), e.g. ``RIAD_VLM_MODEL`` for the reasoning model.
The server supplies its own checkpointer, so none is compiled in. Runs take JSON input,
``{"request": {...}}`` for the inspection graph and ``{"job": {...}}`` for triage, validated into
the request models; the assistants' schemas show those inputs and the report / summary outputs.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph.state import CompiledStateGraph

from riad_agent.components import Components, build_components
from riad_agent.graphs.inspection import build_inspection_graph
from riad_agent.graphs.triage import build_triage_graph
from riad_agent.settings import load_settings

Graph = CompiledStateGraph[Any, Any, Any, Any]


def served_graphs(components: Components) -> tuple[Graph, Graph]:
    """The inspection and triage graphs as the server runs them, on ``components``."""
    return (
        build_inspection_graph(components=components, checkpointer=False),
        build_triage_graph(components=components),
    )


inspection, triage = served_graphs(build_components(load_settings()))
