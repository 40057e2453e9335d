"""LangGraph graphs of riad-agent (installed as ``riad_agent.graphs``)."""
