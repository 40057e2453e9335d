"""The graphs as ``riad_agent.graphs.serving`` serves them, on the fake components (for the server test).

LangGraph Server loads this file by path (see ``test_langgraph_server.py``); settings come from
``RIAD_*`` in its environment, as for the real ``langgraph.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner

from riad_agent.components import build_components
from riad_agent.graphs.serving import served_graphs
from riad_agent.settings import load_settings

inspection, triage = served_graphs(
    build_components(load_settings(), knowledge=FakeKnowledge(), expert=FakeExpert(), reasoner=FakeReasoner())
)
