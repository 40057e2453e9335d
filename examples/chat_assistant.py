"""A chat assistant that answers defect questions by calling the riad-agent inspection tool.

With a real provider (any LangChain chat model that supports tool calling):

    pip install langchain-openai
    export OPENAI_API_KEY=...
    python examples/chat_assistant.py --model openai:gpt-4o-mini part.png --reference-dir good/

The test runs it offline with a scripted chat model.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, ToolMessage

from riad_agent.inspector import Inspector
from riad_agent.tools.langchain import agent_tools

SYSTEM_PROMPT = (
    "You are a quality-control assistant. When the user asks about a part image, call "
    "inspect_industrial_image with the image path, the normal reference images and the category, "
    "then answer from the report: verdict, defect type, where it is, and how sure the tool is. An "
    "'uncertain' verdict is an answer: say why, as the report does, and what would settle it. When the "
    "user says some parts are good, register them (register_product) and inspect later parts of that "
    "product by its name as the category; when the user names a defect on an image, add it "
    "(add_defect_exemplar)."
)


def build_assistant(model: BaseChatModel, inspector: Inspector | None = None) -> Any:
    """An agent graph with the inspection tool and the product memory's tools (one registry);
    invoke it with ``{"messages": [...]}``."""
    return create_agent(model, tools=agent_tools(inspector=inspector), system_prompt=SYSTEM_PROMPT)


async def ask(assistant: Any, question: str) -> tuple[str, list[Any]]:
    """The assistant's final answer and the inspection reports it obtained."""
    result = await assistant.ainvoke({"messages": [HumanMessage(question)]})
    reports = [
        m.artifact for m in result["messages"] if isinstance(m, ToolMessage) and m.artifact is not None
    ]
    return str(result["messages"][-1].content), reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("--model", required=True, help="provider:model for langchain's init_chat_model")
    parser.add_argument("--reference-dir", type=Path)
    parser.add_argument("--category")
    args = parser.parse_args()
    from langchain.chat_models import init_chat_model

    suffixes = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
    folder = args.reference_dir
    references = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in suffixes) if folder else []
    question = f"Is the part in {args.image} defective? References: {references}. Category: {args.category}."
    answer, _ = asyncio.run(ask(build_assistant(init_chat_model(args.model)), question))
    print(answer)


if __name__ == "__main__":
    main()
