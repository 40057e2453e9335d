"""``riad serve mcp``: the inspection tool over MCP (stdio or streamable HTTP)."""

from __future__ import annotations

from typing import Annotated

import typer

from riad_agent.commands.terminal import typed_errors


def serve_mcp(
    http: Annotated[bool, typer.Option("--http", help="Streamable HTTP instead of stdio.")] = False,
    host: Annotated[str, typer.Option(help="Address to bind with --http.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port with --http.")] = 8765,
) -> None:
    """Serve the inspection and product-memory tools over MCP (stdio by default), with progress notifications."""
    with typed_errors():
        from riad_agent.settings import load_settings
        from riad_agent.tools.mcp_server import serve_mcp as run_server

        run_server("streamable-http" if http else "stdio", host=host, port=port, settings=load_settings())
