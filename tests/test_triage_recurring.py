"""Triage names a place where most of a product's anomalous images peak: in its summary and on its page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from riad_agent.graphs.triage import TriageSummary, recurring_cautions
from riad_agent.triage_html import render_triage_html
from riad_agent.triage_recurring import MIN_IMAGES, recurring_places
from riad_agent.triage_view import TriageRow

SIZE = (256, 256)


def _row(
    name: str, outcome: str, centre: tuple[float, float] | None, product: str | None = None
) -> TriageRow:
    box = None
    if centre is not None:
        x, y = centre
        box = (x - 12, y - 6, x + 12, y + 6)
    score = 0.9 if outcome == "anomalous" else 0.1
    return TriageRow(
        image=f"/line/{name}.png",
        path=f"{name}.png",
        outcome=outcome,  # type: ignore[arg-type]
        product=product,
        score=score,
        box=box,
        size=SIZE,
        references=4,
    )


def _random_defects(count: int, seed: int, product: str | None = None, top: float = 20) -> list[TriageRow]:
    """Defects at seeded random places, their centres ``top`` px or more down the image."""
    rng = np.random.default_rng(seed)
    xs, ys = rng.uniform(20, 236, size=count), rng.uniform(top, 236, size=count)
    return [
        _row(f"d{seed}_{i}", "anomalous", (float(x), float(y)), product)
        for i, (x, y) in enumerate(zip(xs, ys, strict=True))
    ]


def _body_top(count: int, product: str | None = None) -> list[TriageRow]:
    """Good parts of a line that sits lower than the references: all flagged on the body's top edge."""
    return [
        _row(f"top{i}", "anomalous", (128.0 + 3 * (i % 3), 40.0 + 2 * (i % 4)), product) for i in range(count)
    ]


def test_flagged_images_peaking_at_one_place_are_named_with_the_place() -> None:
    rows = (
        _body_top(9)
        + _random_defects(5, seed=1, top=120)
        + [_row(f"ok{i}", "normal", None) for i in range(20)]
    )
    (place,) = recurring_places(rows)
    assert place.images == 9 and place.anomalous == 14 and place.product is None
    assert place.size == SIZE and place.references == 4
    sentence = place.sentence()
    assert sentence.startswith("9 of the 14 anomalous images peak at the same place (x 1")
    assert "of 256x256 px; top" in sentence and "the 4 references do not show" in sentence
    x0, y0, x1, y1 = place.box  # the median strongest box, as fractions of the image
    assert 0.4 < x0 < x1 < 0.6 and 0.1 < y0 < y1 < 0.2


def test_defects_at_random_places_and_too_few_images_say_nothing() -> None:
    for seed in range(10):  # a line's defects land anywhere: no place holds half of them
        assert recurring_places(_random_defects(20, seed)) == []
    assert recurring_places(_body_top(MIN_IMAGES - 1)) == []  # four images are no pattern
    # five at one place among eleven anomalous: under half, not a pattern of the batch
    assert recurring_places(_body_top(5) + _random_defects(6, seed=3, top=120)) == []


def test_each_product_is_read_on_its_own() -> None:
    rows = _body_top(6, "pcb") + _random_defects(20, seed=4, product="washer")
    (place,) = recurring_places(rows)
    assert place.product == "pcb" and "of 'pcb' peak" in place.sentence()


def _write(path: Path, rows: list[TriageRow]) -> None:
    with path.open("w") as out:
        for row in rows:
            record = {
                "image": row.image,
                "path": row.path,
                "product": row.product,
                "verdict": row.outcome,
                "score": row.score,
                "regions": [{"box": list(row.box), "score": row.score}] if row.box else [],
                "size": list(row.size or SIZE),
                "references": row.references,
                "elapsed_ms": 1.0,
            }
            out.write(json.dumps(record) + "\n")


def test_the_summary_and_the_page_carry_the_caution(tmp_path: Path) -> None:
    results = tmp_path / "triage.jsonl"
    _write(results, _body_top(7) + [_row(f"ok{i}", "normal", None) for i in range(10)])
    summary = TriageSummary.counted(["anomalous"] * 7, total=7, skipped=0, inspected=7, out=results)
    assert len(summary.cautions) == 1 and summary.cautions[0].startswith("7 of the 7 anomalous images")
    assert summary.cautions == recurring_cautions(results)
    page = render_triage_html(results)
    assert "A pattern across images" in page and "7 of the 7 anomalous images" in page
    # random defects: neither says anything
    _write(results, _random_defects(20, seed=5))
    assert recurring_cautions(results) == [] and "A pattern across images" not in render_triage_html(results)
    assert recurring_cautions(tmp_path / "missing.jsonl") == []
