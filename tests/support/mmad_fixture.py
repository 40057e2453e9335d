"""A small MMAD-format fixture from generated images: two source datasets, every question type.

Layout as published: ``<root>/mmad.json`` keyed by image path relative to ``root``; normal images
sit under ``.../good/...`` (MMAD decides normal vs anomalous by that substring).
"""

from __future__ import annotations

import json
from pathlib import Path

from riad_agent.data.synthetic import generate_sample

YES_NO = {"A": "Yes.", "B": "No."}


def _question(text: str, options: dict[str, str], answer: str, kind: str) -> dict[str, object]:
    return {"Question": text, "Options": options, "Answer": answer, "type": kind}


def _anomalous_questions(defect: str) -> list[dict[str, object]]:
    return [
        _question("Is there any defect in the object?", YES_NO, "A", "Anomaly Detection"),
        _question(
            "What type of defect is present?",
            {"A": "Crack.", "B": defect.capitalize() + ".", "C": "Bent.", "D": "Stain."},
            "B",
            "Defect Classification",
        ),
        _question(
            "Where is the defect?",
            {"A": "Top left.", "B": "Centre.", "C": "Bottom right."},
            "C",
            "Defect Localization",
        ),
        _question(
            "What does the defect look like?",
            {"A": "A thin line.", "B": "A round dark area.", "C": "Nothing visible."},
            "A",
            "Defect Description",
        ),
        _question(
            "What is the effect of the defect?",
            {"A": "None.", "B": "It weakens the part."},
            "B",
            "Defect Analysis",
        ),
        _question(
            "What kind of product is this?",
            {"A": "A washer.", "B": "A fabric.", "C": "A tile."},
            "A",
            "Object Classification",
        ),
        _question(
            "How many holes does the object have?",
            {"A": "One.", "B": "Two.", "C": "None."},
            "A",
            "Object Details",
        ),
    ]


def _normal_questions() -> list[dict[str, object]]:
    return [
        _question("Is there any defect in the object?", YES_NO, "B", "Anomaly Detection"),
        _question(
            "What kind of product is this?",
            {"A": "A washer.", "B": "A fabric.", "C": "A tile."},
            "A",
            "Object Classification",
        ),
        _question("Is the surface uniform?", YES_NO, "A", "Object Analysis"),
    ]


def build_mmad_fixture(root: Path, size: int = 64) -> Path:
    """Write images and ``mmad.json`` for MVTec-AD/washer and VisA/fabric (2 normal + 2 anomalous each)."""
    index: dict[str, object] = {}
    plan = [
        ("MVTec-AD", "synthetic/washer", ("scratch", "hole")),
        ("VisA", "synthetic/fabric", ("stain", "crack")),
    ]
    for d, (dataset, category, defects) in enumerate(plan):
        product = category.split("/")[1]
        templates = []
        for i in range(2):
            rel = f"{dataset}/{product}/train/good/{i:03d}.png"
            _save(root, rel, category, None, 100 * d + i, size)
            templates.append(rel)
        for i in range(2):
            rel = f"{dataset}/{product}/test/good/{i:03d}.png"
            _save(root, rel, category, None, 100 * d + 10 + i, size)
            index[rel] = _entry(_normal_questions(), templates, None)
        for i, defect in enumerate(defects):
            rel = f"{dataset}/{product}/test/{defect}/{i:03d}.png"
            _save(root, rel, category, defect, 100 * d + 20 + i, size)
            index[rel] = _entry(_anomalous_questions(defect), templates, f"{dataset}/{product}/mask/{i}.png")
    (root / "mmad.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    return root


def _entry(
    conversation: list[dict[str, object]], templates: list[str], mask: str | None
) -> dict[str, object]:
    return {
        "conversation": conversation,
        "similar_templates": templates,
        "random_templates": list(reversed(templates)),
        "mask_path": mask,
    }


def _save(root: Path, rel: str, category: str, defect: str | None, seed: int, size: int) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    generate_sample(category, defect, seed, size).image.save(path)


FIXTURE_QUESTIONS = 2 * (2 * 3 + 2 * 7)
"""Questions in the fixture: per dataset 2 normal images x 3 + 2 anomalous x 7."""
