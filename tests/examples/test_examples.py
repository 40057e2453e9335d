"""Each example runs end to end on generated images and fake components (no network, no model)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from pydantic import Field
from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner, part_image

from riad_agent.components import Components, build_components
from riad_agent.inspector import Inspector
from riad_agent.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # LangGraph resolves the state's type hints through sys.modules
    spec.loader.exec_module(module)
    return module


def _components(tmp_path: Path) -> Components:
    return build_components(
        Settings(data_dir=tmp_path / "data", allowed_roots=[tmp_path]),
        knowledge=FakeKnowledge(),
        expert=FakeExpert(),
        reasoner=FakeReasoner(),
    )


class ScriptedChatModel(GenericFakeChatModel):
    bound: list[str] = Field(default_factory=list)  # the names of the tools the agent offered the model

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        self.bound = [tool.name for tool in tools]
        return self


async def test_chat_assistant_answers_from_the_tool(tmp_path: Path) -> None:
    module = _load("chat_assistant")
    part_image(True, seed=1).save(tmp_path / "part.png")
    part_image(False, seed=2).save(tmp_path / "good.png")
    call = {
        "name": "inspect_industrial_image",
        "id": "c1",
        "type": "tool_call",
        "args": {"image": str(tmp_path / "part.png"), "references": [str(tmp_path / "good.png")]},
    }
    model = ScriptedChatModel(
        messages=iter(
            [AIMessage(content="", tool_calls=[call]), AIMessage(content="Defective: a scratch, top left.")]
        )
    )
    assistant = module.build_assistant(model, Inspector(components=_components(tmp_path)))
    answer, reports = await module.ask(assistant, "Is part.png ok?")
    # the product memory is offered too: "these are good parts" can be acted on
    assert {"inspect_industrial_image", "register_product", "add_defect_exemplar"} <= set(model.bound)
    assert answer.startswith("Defective")
    assert len(reports) == 1 and reports[0].verdict == "anomalous"


async def test_mlops_triage_finds_the_defective_parts(tmp_path: Path) -> None:
    module = _load("mlops_triage")
    images = tmp_path / "images"
    images.mkdir()
    for index in range(5):
        part_image(index in (1, 3), seed=index).save(images / f"p{index}.png")
    part_image(False, seed=9).save(tmp_path / "ref.png")
    out = tmp_path / "results.jsonl"
    summary, anomalies, uncertain = await module.triage_folder(
        images, [tmp_path / "ref.png"], out, components=_components(tmp_path)
    )
    assert summary.total == 5 and summary.anomalous == 2
    assert sorted(Path(r["image"]).name for r in anomalies) == ["p1.png", "p3.png"]
    assert len(uncertain) == summary.uncertain and all(r["reason"] for r in uncertain)
    assert out.with_suffix(".html").is_file()


async def test_workflow_routes_on_the_verdict(tmp_path: Path) -> None:
    module = _load("workflow_subgraph")
    workflow = module.build_line_workflow(_components(tmp_path))
    part_image(False, seed=2).save(tmp_path / "ref.png")
    decisions = {}
    for name, defect in (("good", False), ("bad", True)):
        part_image(defect, seed=5).save(tmp_path / f"{name}.png")
        state = await workflow.ainvoke(
            {
                "part_id": name,
                "image": str(tmp_path / f"{name}.png"),
                "references": [str(tmp_path / "ref.png")],
            }
        )
        decisions[name] = state["decision"]
    assert decisions["good"] == "ship good"
    assert decisions["bad"].startswith("quarantine bad at ")
