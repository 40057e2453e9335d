"""The inspection graph embedded as a subgraph of a larger production workflow.

    receive_part -> inspection (riad-agent subgraph) -> route -> ship | quarantine | ask_operator

The parent graph keeps its own state (a part id, a station, a decision) and maps it to and from
the inspection graph's ``request`` and ``report`` keys in one small adapter node.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph

from riad_agent.components import Components, build_components
from riad_agent.graphs.inspection import build_inspection_graph
from riad_agent.schemas import InspectionReport, InspectionRequest
from riad_agent.settings import load_settings


class LineState(TypedDict, total=False):
    part_id: str
    image: str
    references: list[str]
    report: InspectionReport
    decision: str


def build_line_workflow(components: Components | None = None) -> Any:
    """The parent workflow; invoke with ``{"part_id", "image", "references"}``."""
    inspection = build_inspection_graph(
        components=components or build_components(load_settings()), checkpointer=False
    )

    async def inspect_part(state: LineState) -> dict[str, Any]:
        request = InspectionRequest(image=state["image"], references=list(state.get("references", [])))
        result = await inspection.ainvoke({"request": request})
        return {"report": result["report"]}

    def route(state: LineState) -> Literal["ship", "quarantine", "ask_operator"]:
        verdict = state["report"].verdict
        return {"normal": "ship", "anomalous": "quarantine"}.get(verdict, "ask_operator")  # type: ignore[return-value]

    def ship(state: LineState) -> dict[str, Any]:
        return {"decision": f"ship {state['part_id']}"}

    def quarantine(state: LineState) -> dict[str, Any]:
        report = state["report"]
        where = f" at {report.regions[0].x0},{report.regions[0].y0}" if report.regions else ""
        return {"decision": f"quarantine {state['part_id']}{where} (score {report.anomaly_score:.2f})"}

    def ask_operator(state: LineState) -> dict[str, Any]:
        return {"decision": f"operator check {state['part_id']}"}

    graph = StateGraph(LineState)
    graph.add_node("inspection", inspect_part)
    graph.add_node("ship", ship)
    graph.add_node("quarantine", quarantine)
    graph.add_node("ask_operator", ask_operator)
    graph.add_edge(START, "inspection")
    graph.add_conditional_edges("inspection", route)
    for end in ("ship", "quarantine", "ask_operator"):
        graph.add_edge(end, END)
    return graph.compile()


if __name__ == "__main__":
    import asyncio
    import sys

    workflow = build_line_workflow()
    print(
        asyncio.run(workflow.ainvoke({"part_id": "P-1", "image": sys.argv[1], "references": sys.argv[2:]}))[
            "decision"
        ]
    )
