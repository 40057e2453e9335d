"""``riad eval typing``: leave-one-out defect typing by labelled exemplars on a generated layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from riad_agent.cli import app
from riad_agent.data.synthetic import write_mvtec_layout
from riad_agent.eval.typing_eval import evaluate_category, labelled_defects, mask_box
from riad_agent.products import ImageEmbedder


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("typing")
    return write_mvtec_layout(
        root,
        categories=("synthetic/tile",),
        n_train=2,
        n_test_good=1,
        n_test_per_defect=3,
        seed=11,
        defects=("hole", "scratch", "colour"),
    )


def test_labelled_defects_pair_each_image_with_its_mask(layout: Path) -> None:
    items = labelled_defects(layout / "tile")
    assert len(items) == 9 and {item.defect_type for item in items} == {"hole", "scratch", "colour"}
    x0, y0, x1, y1 = mask_box(items[0].mask)
    assert 0 <= x0 < x1 and 0 <= y0 < y1


def test_typing_by_two_exemplars_beats_chance_on_generated_tiles(layout: Path) -> None:
    result = evaluate_category(layout / "tile", ImageEmbedder(), exemplars=2)
    assert result is not None and result.types == 3 and result.queries == 9
    assert (
        result.accuracy > result.chance + 0.2
    )  # measured 0.93 with 3 exemplars of 7 types (docs/results.md)
    assert 0 <= result.typed <= 1 and 0 <= result.right_when_typed <= 1


def test_cli_prints_json_and_refuses_bad_options(layout: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["eval", "typing", "--data", str(layout), "--exemplars", "1", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["results"][0]["category"] == "tile"
    for bad in (["--exemplars", "0"], ["--box", "nearest"], ["--category", "nope"]):
        refused = runner.invoke(app, ["eval", "typing", "--data", str(layout), *bad])
        assert refused.exit_code == 2 and "InvalidRequestError" in refused.output
    missing = runner.invoke(app, ["eval", "typing", "--data", str(layout / "nowhere")])
    assert missing.exit_code == 2
