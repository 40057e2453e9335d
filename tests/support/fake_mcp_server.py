"""An MCP server whose inspector runs on the fake components (for client tests).

usage: fake_mcp_server.py ROOT [PORT]   (stdio without PORT, streamable HTTP on 127.0.0.1:PORT with it)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from riad_agent.components import build_components
from riad_agent.inspector import Inspector
from riad_agent.settings import Settings
from riad_agent.tools.mcp_server import build_mcp_server
from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner

if __name__ == "__main__":
    root = Path(sys.argv[1])
    settings = Settings(data_dir=root / "data", allowed_roots=[root])
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=FakeExpert(), reasoner=FakeReasoner()
    )
    port = int(sys.argv[2]) if len(sys.argv) > 2 else None
    server = build_mcp_server(settings, Inspector(components=components), port=port or 8765)
    server.run("streamable-http" if port else "stdio")
