"""``riad product``: add, extend, add-defect, list, show, remove, and typed errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from products.product_helpers import SIZE
from typer.testing import CliRunner

from riad_agent.cli import app
from riad_agent.data.synthetic import generate_sample


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"RIAD_DATA_DIR": str(tmp_path / "data"), "RIAD_CONFIG": "", "QDRANT_URL": ""}


def _run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["product", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def _good(folder: Path, category: str = "washer", count: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(count):
        generate_sample(category, None, seed, SIZE).image.save(folder / f"{seed:02d}.png")
    return folder


def test_add_extend_defects_list_show_remove(tmp_path: Path, env: dict[str, str]) -> None:
    good = _good(tmp_path / "good")
    code, out, err = _run(env, "add", "washer", "--good", str(good), "--pose", "free", "--json")
    assert code == 0, err
    assert len(json.loads(out)["references"]) == 3
    more = _good(tmp_path / "more", count=5)  # seeds 0-2 again and two new ones
    code, out, _ = _run(env, "add", "washer", "--good", str(more), "--no-cache-bank", "--json")
    assert code == 0 and len(json.loads(out)["references"]) == 5

    sample = generate_sample("washer", "scratch", 9, SIZE)
    sample.image.save(tmp_path / "scratch.png")
    Image.fromarray(sample.mask).save(tmp_path / "scratch_mask.png")
    code, out, err = _run(
        env,
        "add-defect",
        "washer",
        str(tmp_path / "scratch.png"),
        "--type",
        "scratch",
        "--mask",
        str(tmp_path / "scratch_mask.png"),
        "--json",
    )
    assert code == 0, err
    assert tuple(json.loads(out)["box"]) == sample.bbox
    code, out, err = _run(env, "add-defect", "washer", str(tmp_path / "scratch.png"), "--type", "stain")
    assert code == 0, err
    assert "from the expert" in out

    code, out, _ = _run(env, "list", "--json")
    assert json.loads(out) == [
        {
            "name": "washer",
            "knowledge": None,
            "pose": "free",
            "references": 5,
            "defects": {"scratch": 1, "stain": 1},
        }
    ]
    code, out, _ = _run(env, "show", "washer")
    assert code == 0 and "scratch (1)" in out and "misplaced" not in out  # a free pose: no placement note
    code, out, err = _run(env, "reembed", "--json")  # the mask's exemplar and the expert's, both again
    assert code == 0, err
    counts = json.loads(out)
    assert (counts["products"], counts["references"], counts["defects"]) == (1, 5, 2)
    assert json.loads(_run(env, "list", "--json")[1])[0]["defects"] == {"scratch": 1, "stain": 1}
    code, out, _ = _run(env, "remove", "washer", "--type", "stain", "--json")
    assert json.loads(out)["removed_points"] == 1
    code, out, _ = _run(env, "remove", "washer")
    assert code == 0
    assert json.loads(_run(env, "list", "--json")[1]) == []


def test_good_parts_named_one_by_one_extend_a_product(tmp_path: Path, env: dict[str, str]) -> None:
    """As triage's caution asks: the flagged good parts themselves, given as files beside a folder."""
    good = _good(tmp_path / "good", count=2)
    flagged = _good(tmp_path / "flagged", count=5)
    code, out, err = _run(env, "add", "washer", "--good", str(good), "--no-cache-bank", "--json")
    assert code == 0 and len(json.loads(out)["references"]) == 2, err
    files = [str(flagged / "03.png"), str(flagged / "04.png"), str(flagged / "04.png")]  # one twice
    code, out, err = _run(
        env, "add", "washer", *[arg for f in files for arg in ("--good", f)], "--no-cache-bank", "--json"
    )
    assert code == 0 and len(json.loads(out)["references"]) == 4, err  # each image once
    (tmp_path / "notes.txt").write_text("not an image")
    code, _, err = _run(env, "add", "washer", "--good", str(good), "--good", str(tmp_path / "notes.txt"))
    assert code == 2 and err.startswith("InvalidRequestError: --good") and "nor an image file" in err
    assert len(json.loads(_run(env, "show", "washer", "--json")[1])["references"]) == 4  # nothing added


def test_bad_input_gives_one_typed_line(tmp_path: Path, env: dict[str, str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    good = _good(tmp_path / "good", count=1)
    cases = [
        (
            ["add", "washer", "--good", str(tmp_path / "missing")],
            "InvalidRequestError: --good",
            "is not a folder",
        ),
        (["add", "washer", "--good", str(empty)], "InvalidRequestError: --good", "holds no images"),
        (
            ["add", "washer", "--good", str(good), "--pose", "sideways"],
            "InvalidRequestError",
            "--pose must be",
        ),
        (["add", "bad name!", "--good", str(good)], "InvalidRequestError", "not allowed"),
        (["show", "washer"], "UnknownProductError", "none yet"),
        (["remove", "washer"], "UnknownProductError", "no product named 'washer'"),
        (["add-defect", "washer", str(good / "00.png"), "--type", "scratch"], "UnknownProductError", ""),
    ]
    for args, name, detail in cases:
        code, _, err = _run(env, *args)
        assert code == 2, args
        assert err.startswith(name) and detail in err and len(err.strip().splitlines()) == 1, (args, err)


def test_a_mask_of_another_size_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    good = _good(tmp_path / "good", count=1)
    assert _run(env, "add", "washer", "--good", str(good), "--no-cache-bank")[0] == 0
    Image.fromarray(np.ones((40, 40), dtype=bool)).save(tmp_path / "small_mask.png")
    code, _, err = _run(
        env,
        "add-defect",
        "washer",
        str(good / "00.png"),
        "--type",
        "scratch",
        "--mask",
        str(tmp_path / "small_mask.png"),
    )
    assert code == 2
    assert err.startswith("InvalidImageError: the mask is 40x40 px but the image is 96x96 px")
    assert json.loads(_run(env, "show", "washer", "--json")[1])["defects"] == []


def test_paths_outside_the_allowed_roots_are_refused(tmp_path: Path, env: dict[str, str]) -> None:
    good = _good(tmp_path / "outside" / "good", count=1)
    inside = tmp_path / "inside"
    inside.mkdir()
    confined = {**env, "RIAD_ALLOWED_ROOTS": json.dumps([str(inside)])}
    code, _, err = _run(confined, "add", "washer", "--good", str(good))
    assert code == 2 and err.startswith("PathNotAllowedError: --good folder")
    (inside / "link").symlink_to(good)  # a link inside pointing outside is still outside
    code, _, err = _run(confined, "add", "washer", "--good", str(inside / "link"))
    assert code == 2 and err.startswith("PathNotAllowedError")


def test_knowledge_link_is_resolved_and_a_typo_refused(tmp_path: Path, env: dict[str, str]) -> None:
    good = _good(tmp_path / "good", count=1)
    hashing = {**env, "RIAD_EMBEDDER": "hashing"}
    code, _, err = _run(
        hashing, "add", "screw", "--good", str(good), "--knowledge", "scerw", "--no-cache-bank"
    )
    assert code == 2 and err.startswith("UnknownCategoryError"), err
    code, out, err = _run(
        hashing, "add", "screw", "--good", str(good), "--knowledge", "screw", "--no-cache-bank", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["knowledge"] == "mvtec/screw"
    code, _, err = _run(hashing, "add", "screw", "--good", str(good), "--knowledge", "mvtec/bottle")
    assert code == 2 and err.startswith("ProductExistsError") and "--knowledge mvtec/bottle" in err
    # the short name of the same link is the same link: extending is fine
    code, _, err = _run(
        hashing, "add", "screw", "--good", str(good), "--knowledge", "screw", "--no-cache-bank"
    )
    assert code == 0, err


def test_a_fixed_pose_product_is_told_what_its_references_must_show(
    tmp_path: Path, env: dict[str, str]
) -> None:
    good = _good(tmp_path / "good", category="bracket")
    code, out, err = _run(env, "add", "bracket", "--good", str(good), "--pose", "fixed")
    assert code == 0, err
    assert "reads as misplaced" in " ".join(out.split()) and "normal placement" in " ".join(out.split())


def test_the_placement_note_reads_a_declared_or_resolved_fixed_pose() -> None:
    from riad_agent.products.models import placement_advice

    assert placement_advice("fixed") == placement_advice("fixed (references)") is not None
    assert placement_advice("free (references)") is None and placement_advice(None) is None
