"""The knowledge file format: valid files load, every malformed one is a typed error naming file and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from riad_agent.errors import DuplicateEntryError, KnowledgeFormatError
from riad_agent.knowledge.loaders import load_riad, parse_category_file
from riad_agent.knowledge.schema import KnowledgeEntry

FIXTURES = Path(__file__).parent / "fixtures" / "base"


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "base"
    shutil.copytree(FIXTURES, target)
    return target


def test_fixture_tree_loads_with_ids_and_prose() -> None:
    entries = load_riad(FIXTURES)
    ids = [e.id for e in entries]
    assert len(ids) == 12
    assert "mvtec/hazelnut/normal" in ids and "mvtec/hazelnut/crack" in ids
    crack = next(e for e in entries if e.id == "mvtec/hazelnut/crack")
    assert crack.kind == "defect" and crack.defect_type == "crack"
    assert crack.category_key == "mvtec/hazelnut"
    assert crack.source == "mvtec/hazelnut.yaml"
    assert "fissure" in crack.text and "Visual cues" in crack.text
    normal = next(e for e in entries if e.id == "mvtec/hazelnut/normal")
    assert normal.kind == "normal" and normal.defect_type is None
    assert "crack" in normal.text  # the normal entry lists the known defect types


def test_content_hash_ignores_source_but_follows_content() -> None:
    entry = load_riad(FIXTURES)[0]
    moved = KnowledgeEntry.model_validate(
        entry.model_dump() | {"source": "elsewhere.yaml", "content_hash": ""}
    )
    assert moved.content_hash == entry.content_hash
    edited = KnowledgeEntry.model_validate(
        entry.model_dump() | {"text": entry.text + " More.", "content_hash": ""}
    )
    assert edited.content_hash != entry.content_hash


def test_malformed_yaml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: mvtec\ncategory: [unclosed\n", encoding="utf-8")
    with pytest.raises(KnowledgeFormatError, match="bad.yaml.*not valid YAML"):
        parse_category_file(bad)


def test_missing_field_is_named(tmp_path: Path) -> None:
    base = _copy(tmp_path)
    file = base / "mvtec" / "hazelnut.yaml"
    file.write_text(file.read_text().replace("    severity: high\n", "", 1), encoding="utf-8")
    with pytest.raises(KnowledgeFormatError) as info:
        load_riad(base)
    assert "hazelnut.yaml" in info.value.message
    assert "defects.0.severity" in info.value.message and "missing" in info.value.message


def test_extra_field_is_an_error(tmp_path: Path) -> None:
    base = _copy(tmp_path)
    file = base / "visa" / "candle.yaml"
    file.write_text(
        file.read_text().replace("kind: object\n", "kind: object\ncolour: white\n"), encoding="utf-8"
    )
    with pytest.raises(KnowledgeFormatError, match="candle.yaml.*'colour' is not part of the format"):
        load_riad(base)


def test_bad_enum_value_is_named(tmp_path: Path) -> None:
    base = _copy(tmp_path)
    file = base / "mvtec" / "screw.yaml"
    file.write_text(file.read_text().replace("severity: high", "severity: extreme"), encoding="utf-8")
    with pytest.raises(KnowledgeFormatError, match="screw.yaml.*defects.1.severity"):
        load_riad(base)


def test_duplicate_defect_type_is_a_duplicate_entry(tmp_path: Path) -> None:
    base = _copy(tmp_path)
    file = base / "mvtec" / "hazelnut.yaml"
    file.write_text(file.read_text().replace("type: hole", "type: crack"), encoding="utf-8")
    with pytest.raises(DuplicateEntryError, match="hazelnut.yaml.*'crack' appears twice"):
        load_riad(base)


def test_duplicate_category_in_two_files(tmp_path: Path) -> None:
    base = _copy(tmp_path)
    shutil.copy(base / "mvtec" / "hazelnut.yaml", base / "mvtec" / "hazelnut_copy.yaml")
    with pytest.raises(DuplicateEntryError, match="category 'mvtec/hazelnut' is already defined"):
        load_riad(base)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(KnowledgeFormatError, match="top level must be a mapping"):
        load_riad(bad)


def test_reserved_normal_type(tmp_path: Path) -> None:
    base = _copy(tmp_path)
    file = base / "visa" / "screw.yaml"
    file.write_text(file.read_text().replace("type: rust", "type: normal"), encoding="utf-8")
    with pytest.raises(KnowledgeFormatError, match="reserved"):
        load_riad(base)
