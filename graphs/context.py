"""How the graphs reach their components: bound into the compiled graph's config.

``build_inspection_graph`` binds the :class:`~riad_agent.components.Components` under
``config["configurable"]["riad_components"]``, so every run gets them: direct calls, ``astream``, a
parent graph calling this one, LangGraph Server, and a run resumed from a checkpoint by a freshly
built graph. Nothing of it is written to checkpoints (only plain values of ``configurable`` become
checkpoint metadata).
"""

from __future__ import annotations

from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from riad_agent.components import Components
from riad_agent.errors import ConfigurationError

COMPONENTS_KEY = "riad_components"

Graph = TypeVar("Graph", bound=CompiledStateGraph[Any, Any, Any, Any])


def bind(graph: Graph, components: Components, **values: Any) -> Graph:
    """The compiled graph with ``components`` (and any other ``values``) in every run's config."""
    return graph.with_config(configurable={COMPONENTS_KEY: components, **values})


def configured(config: RunnableConfig, key: str) -> Any:
    """A value bound by :func:`bind` (None when absent)."""
    return (config.get("configurable") or {}).get(key)


def components_of(config: RunnableConfig) -> Components:
    """The components bound to the running graph."""
    components = configured(config, COMPONENTS_KEY)
    if not isinstance(components, Components):
        raise ConfigurationError(
            "the graph runs without its components: compile it with build_inspection_graph(...) "
            "or build_triage_graph(...)"
        )
    return components
