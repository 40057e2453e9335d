"""Tool exposure: LangChain, llama-index and MCP (installed as ``riad_agent.tools``)."""
