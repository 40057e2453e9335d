"""Graphs for ``langgraph dev`` / LangGraph Server (see ``langgraph.json``).

Settings come from the environment (``RIAD_*``), e.g. ``RIAD_VLM_MODEL`` for the reasoning model.
The server supplies its own checkpointer, so none is compiled in.
"""

from __future__ import annotations

from riad_agent.components import build_components
from riad_agent.graphs.inspection import build_inspection_graph
from riad_agent.graphs.triage import build_triage_graph
from riad_agent.settings import load_settings

_components = build_components(load_settings())
inspection = build_inspection_graph(components=_components, checkpointer=False)
triage = build_triage_graph(components=_components)
