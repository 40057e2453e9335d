"""Content checks for the defect knowledge base (knowledge/base) and the retrieval eval set.

Self-contained: plain PyYAML + Python, no import of the riad_agent code.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "knowledge" / "base"
QUERIES = ROOT / "knowledge" / "eval" / "queries.yaml"

EXPECTED_COUNTS = {"mvtec": 15, "visa": 12, "mvtec_loco": 5, "elpv": 1, "synthetic": 3}
EXPECTED_CATEGORIES = {
    "mvtec": {
        "bottle",
        "cable",
        "capsule",
        "carpet",
        "grid",
        "hazelnut",
        "leather",
        "metal_nut",
        "pill",
        "screw",
        "tile",
        "toothbrush",
        "transistor",
        "wood",
        "zipper",
    },
    "visa": {
        "candle",
        "capsules",
        "cashew",
        "chewinggum",
        "fryum",
        "macaroni1",
        "macaroni2",
        "pcb1",
        "pcb2",
        "pcb3",
        "pcb4",
        "pipe_fryum",
    },
    "mvtec_loco": {"breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors"},
    "elpv": {"solar_cell"},
    "synthetic": {"washer", "fabric", "tile"},  # the generator's parts, used by `riad demo`
}
# Official MVTec AD defect folders (test/<type>), checked exactly.
MVTEC_TYPES = {
    "bottle": {"broken_large", "broken_small", "contamination"},
    "cable": {
        "bent_wire",
        "cable_swap",
        "combined",
        "cut_inner_insulation",
        "cut_outer_insulation",
        "missing_cable",
        "missing_wire",
        "poke_insulation",
    },
    "capsule": {"crack", "faulty_imprint", "poke", "scratch", "squeeze"},
    "carpet": {"color", "cut", "hole", "metal_contamination", "thread"},
    "grid": {"bent", "broken", "glue", "metal_contamination", "thread"},
    "hazelnut": {"crack", "cut", "hole", "print"},
    "leather": {"color", "cut", "fold", "glue", "poke"},
    "metal_nut": {"bent", "color", "flip", "scratch"},
    "pill": {"color", "combined", "contamination", "crack", "faulty_imprint", "pill_type", "scratch"},
    "screw": {"manipulated_front", "scratch_head", "scratch_neck", "thread_side", "thread_top"},
    "tile": {"crack", "glue_strip", "gray_stroke", "oil", "rough"},
    "toothbrush": {"defective"},
    "transistor": {"bent_lead", "cut_lead", "damaged_case", "misplaced"},
    "wood": {"color", "combined", "hole", "liquid", "scratch"},
    "zipper": {
        "broken_teeth",
        "combined",
        "fabric_border",
        "fabric_interior",
        "rough",
        "split_teeth",
        "squeezed_teeth",
    },
}

TOP_KEYS = {"dataset", "category", "display_name", "kind", "normal", "defects"}
NORMAL_KEYS = {"description", "acceptable_variation"}
DEFECT_KEYS = {
    "type",
    "name",
    "aliases",
    "visual_cues",
    "typical_location",
    "distinguish_from_normal",
    "severity",
    "likely_cause",
    "anomaly_class",
}
TEXT_DEFECT_KEYS = DEFECT_KEYS - {"type", "aliases", "severity", "anomaly_class"}
SNAKE = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")

FILES = sorted(BASE.glob("*/*.yaml"))


def _load(path: Path) -> dict:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and value.strip() != ""


def test_file_counts_per_dataset():
    counts = Counter(p.parent.name for p in FILES)
    assert dict(counts) == EXPECTED_COUNTS
    assert len(FILES) == 36  # the 33 benchmark categories and the 3 generated ones


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_category_file_schema(path: Path):
    data = _load(path)
    assert isinstance(data, dict)
    assert TOP_KEYS <= set(data) <= TOP_KEYS | {"pose"}, f"keys: {sorted(set(data) ^ TOP_KEYS)}"
    assert data.get("pose", "free") in {"free", "fixed"}
    assert data["dataset"] == path.parent.name
    assert data["category"] == path.stem
    assert SNAKE.match(data["category"])
    assert data["category"] in EXPECTED_CATEGORIES[data["dataset"]]
    assert _nonempty_str(data["display_name"])
    assert data["kind"] in {"object", "texture"}

    normal = data["normal"]
    assert isinstance(normal, dict) and set(normal) == NORMAL_KEYS
    assert all(_nonempty_str(normal[k]) for k in NORMAL_KEYS)

    defects = data["defects"]
    assert isinstance(defects, list) and defects
    types = [d.get("type") for d in defects]
    assert len(types) == len(set(types)), "duplicate defect types"
    for d in defects:
        assert isinstance(d, dict)
        assert set(d) == DEFECT_KEYS, f"{d.get('type')}: {sorted(set(d) ^ DEFECT_KEYS)}"
        assert isinstance(d["type"], str) and SNAKE.match(d["type"]), d["type"]
        assert d["type"] != "normal", "'normal' is reserved for the normal entry id"
        assert all(_nonempty_str(d[k]) for k in TEXT_DEFECT_KEYS), d["type"]
        aliases = d["aliases"]
        assert isinstance(aliases, list) and 1 <= len(aliases) <= 5, d["type"]
        assert all(_nonempty_str(a) for a in aliases), d["type"]
        assert d["severity"] in {"low", "medium", "high"}
        assert d["anomaly_class"] in {"structural", "logical"}
        if data["dataset"] != "mvtec_loco":
            assert d["anomaly_class"] == "structural", d["type"]


def test_categories_complete():
    found: dict[str, set[str]] = {k: set() for k in EXPECTED_CATEGORIES}
    for p in FILES:
        found[p.parent.name].add(p.stem)
    assert found == EXPECTED_CATEGORIES


def test_mvtec_types_are_official():
    for cat, expected in MVTEC_TYPES.items():
        data = _load(BASE / "mvtec" / f"{cat}.yaml")
        assert {d["type"] for d in data["defects"]} == expected, cat


def test_loco_has_both_anomaly_classes():
    for p in sorted((BASE / "mvtec_loco").glob("*.yaml")):
        classes = {d["anomaly_class"] for d in _load(p)["defects"]}
        assert classes == {"structural", "logical"}, p.stem


def _entry_ids() -> set[str]:
    ids = set()
    for p in FILES:
        data = _load(p)
        prefix = f"{data['dataset']}/{data['category']}"
        ids.add(f"{prefix}/normal")
        ids.update(f"{prefix}/{d['type']}" for d in data["defects"])
    return ids


def test_queries_file():
    queries = _load(QUERIES)
    assert isinstance(queries, list)
    assert len(queries) >= 180
    ids = _entry_ids()
    per_category: Counter[str] = Counter()
    normals: Counter[str] = Counter()
    seen = set()
    for q in queries:
        assert isinstance(q, dict) and set(q) == {"query", "category", "expected"}, q
        assert _nonempty_str(q["query"])
        assert q["expected"] in ids, q["expected"]
        assert q["expected"].startswith(q["category"] + "/"), q
        assert q["query"].strip().lower() not in seen, f"duplicate query: {q['query']}"
        seen.add(q["query"].strip().lower())
        per_category[q["category"]] += 1
        if q["expected"].endswith("/normal"):
            normals[q["category"]] += 1
    all_categories = {f"{ds}/{c}" for ds, cats in EXPECTED_CATEGORIES.items() for c in cats}
    assert set(per_category) == all_categories
    assert min(per_category.values()) >= 3, per_category.most_common()[-3:]
    assert sum(normals.values()) >= 10
