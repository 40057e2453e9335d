"""Loaders: MMAD's domain_knowledge.json layout and Markdown folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from riad_agent.errors import DuplicateEntryError, KnowledgeFormatError
from riad_agent.knowledge.backend import connect
from riad_agent.knowledge.embed import HashingEmbedder
from riad_agent.knowledge.loaders import (
    category_pose,
    default_base_path,
    detect_format,
    load_entries,
    load_markdown,
    load_mmad,
)
from riad_agent.knowledge.store import QdrantKnowledgeBase
from riad_agent.settings import Settings

MMAD_SHAPE = {
    "MVTec-AD": {
        "hazelnut": {
            "good": "Good Description: A brown hazelnut with an intact, smooth shell.",
            "crack": "Crack Description: A dark fissure splits the shell open.",
            "print": "Print Description: Ink characters printed on the shell.",
        }
    },
    "VisA": {"pcb1": {"bent": "Bent Description: A pin of the component is bent away from its pad."}},
}


def _mmad_file(tmp_path: Path, content: object = MMAD_SHAPE) -> Path:
    path = tmp_path / "domain_knowledge.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def test_mmad_layout_becomes_entries(tmp_path: Path) -> None:
    entries = {e.id: e for e in load_mmad(_mmad_file(tmp_path))}
    assert sorted(entries) == [
        "mvtec/hazelnut/crack",
        "mvtec/hazelnut/normal",
        "mvtec/hazelnut/print",
        "visa/pcb1/bent",
    ]
    crack = entries["mvtec/hazelnut/crack"]
    assert crack.kind == "defect" and crack.defect_type == "crack"
    assert crack.title == "Hazelnut: Crack"
    assert "dark fissure" in crack.text and "Description:" not in crack.text
    assert entries["mvtec/hazelnut/normal"].kind == "normal"
    assert entries["visa/pcb1/bent"].source == "domain_knowledge.json"


def test_mmad_errors_name_the_field(tmp_path: Path) -> None:
    broken = {"MVTec-AD": {"hazelnut": {"crack": ""}}}
    with pytest.raises(KnowledgeFormatError, match="MVTec-AD.hazelnut.crack"):
        load_mmad(_mmad_file(tmp_path, broken))
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(KnowledgeFormatError, match="not valid JSON"):
        load_mmad(tmp_path / "bad.json")
    clash = {"MVTec-AD": {"hazelnut": {"crack": "A"}}, "mvtec": {"hazelnut": {"crack": "B"}}}
    with pytest.raises(DuplicateEntryError, match="mvtec/hazelnut/crack"):
        load_mmad(_mmad_file(tmp_path, clash))


def test_mmad_entries_are_searchable(tmp_path: Path) -> None:
    kb = QdrantKnowledgeBase(connect(Settings(data_dir=tmp_path / "d")), HashingEmbedder())
    try:
        kb.ingest(load_entries(_mmad_file(tmp_path)), scope="mmad")
        assert kb.search("bent pin", k=1)[0].id == "visa/pcb1/bent"
        assert kb.resolve_category("pcb1") == "visa/pcb1"
    finally:
        kb.close()


def _markdown_tree(root: Path) -> Path:
    folder = root / "md" / "mvtec" / "hazelnut"
    folder.mkdir(parents=True)
    (folder / "normal.md").write_text("# Good hazelnut\n\nA smooth brown shell.\n", encoding="utf-8")
    (folder / "crack.md").write_text("# Crack\n\nA dark line that splits the shell.\n", encoding="utf-8")
    other = root / "md" / "notes"
    other.mkdir()
    (other / "wick.md").write_text(
        "---\ndataset: visa\ncategory: candle\ndefect_type: missing_wick\ntitle: Candle without wick\n---\n"
        "The black wick is absent from the centre.\n",
        encoding="utf-8",
    )
    return root / "md"


def test_markdown_folder_one_entry_per_file(tmp_path: Path) -> None:
    root = _markdown_tree(tmp_path)
    assert detect_format(root) == "markdown"
    entries = {e.id: e for e in load_markdown(root)}
    assert sorted(entries) == ["mvtec/hazelnut/crack", "mvtec/hazelnut/normal", "visa/candle/missing_wick"]
    assert entries["mvtec/hazelnut/normal"].kind == "normal"
    assert entries["mvtec/hazelnut/crack"].title == "Crack"
    wick = entries["visa/candle/missing_wick"]
    assert wick.title == "Candle without wick" and wick.text.startswith("The black wick")
    assert wick.source == "notes/wick.md"


def test_markdown_unknown_front_matter_key(tmp_path: Path) -> None:
    folder = tmp_path / "md" / "x" / "y"
    folder.mkdir(parents=True)
    (folder / "a.md").write_text("---\ncolour: red\n---\ntext\n", encoding="utf-8")
    with pytest.raises(KnowledgeFormatError, match="'colour'"):
        load_markdown(tmp_path / "md")


def test_default_base_path_is_the_packaged_folder() -> None:
    path = default_base_path()
    assert path.name == "base" and path.parent.name == "knowledge"


def test_pose_comes_from_the_packaged_category_file(tmp_path: Path) -> None:
    assert category_pose("mvtec/hazelnut") == "free"
    assert category_pose("mvtec/transistor") == "fixed"
    assert category_pose("mvtec/screw") is None  # not declared: the expert infers it
    assert category_pose("mvtec/no_such_part") is None and category_pose("hazelnut") is None
    kb = QdrantKnowledgeBase(connect(Settings(data_dir=tmp_path / "d")), HashingEmbedder())
    try:
        assert kb.pose("mvtec/hazelnut") == "free"
    finally:
        kb.close()
