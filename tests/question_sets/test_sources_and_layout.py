"""Labelled sources keep their splits apart, and a set written in MMAD's layout is read back by the runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from riad_agent.data.synthetic import write_mvtec_layout
from riad_agent.errors import InvalidRequestError
from riad_agent.eval.mmad_data import load_mmad
from riad_agent.question_sets.mmad_layout import write_mmad_layout
from riad_agent.question_sets.sources import LabelledSet, Split, elpv_set, mvtec_set, synthetic_set


@pytest.fixture(scope="module")
def mvtec_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mvtec")
    write_mvtec_layout(
        root, categories=["synthetic/washer"], n_train=6, n_test_good=2, n_test_per_defect=1, seed=5
    )
    return root


def _synthetic(root: Path, split: Split) -> LabelledSet:
    return mvtec_set(root, split, knowledge_dataset="synthetic", key_dataset="Synthetic")


def test_mvtec_split_never_trains_on_test_images(mvtec_like: Path) -> None:
    train, test = _synthetic(mvtec_like, "train"), _synthetic(mvtec_like, "test")
    assert {i.key for i in train.images}.isdisjoint(i.key for i in test.images)
    assert all("/train/" in i.key and not i.label.anomalous for i in train.images)
    assert any(i.label.anomalous and i.label.mask is not None and i.label.mask.any() for i in test.images)
    # in training, the queries are not in their own reference pool
    pool = {key for key, _ in train.pools[train.images[0].pool]}
    assert pool.isdisjoint(i.key for i in train.images)


def test_generated_layout_finds_the_knowledge_that_describes_its_defects(
    mvtec_like: Path, tmp_path: Path
) -> None:
    # the default dataset is 'mvtec', which has no washer: the synthetic file of that name answers
    test = mvtec_set(mvtec_like, "test")
    assert {i.label.category for i in test.images} == {"synthetic/washer"}
    # mvtec/tile exists but lacks the generated tile's defect types: synthetic/tile is chosen
    write_mvtec_layout(
        tmp_path / "t", categories=["synthetic/tile"], n_train=2, n_test_good=1, n_test_per_defect=1, seed=1
    )
    assert {i.label.category for i in mvtec_set(tmp_path / "t", "test").images} == {"synthetic/tile"}
    # no knowledge file at all: a typed error naming the category, not a KeyError deep in the questions
    write_mvtec_layout(
        tmp_path / "b",
        categories=["synthetic/bracket"],
        n_train=2,
        n_test_good=1,
        n_test_per_defect=1,
        seed=1,
    )
    with pytest.raises(InvalidRequestError, match="no knowledge file describes 'bracket'"):
        mvtec_set(tmp_path / "b", "test")


def test_elpv_split_is_disjoint() -> None:
    pytest.importorskip("elpv_dataset")
    train, test = elpv_set("train", 30), elpv_set("test", 30)
    ids = lambda s: {i.key.rsplit("/", 1)[1] for i in s.images}  # noqa: E731
    assert ids(train).isdisjoint(ids(test))
    references = {k.rsplit("/", 1)[1].split(".")[0] for pool in test.pools.values() for k, _ in pool}
    assert references.isdisjoint(k.split("_", 1)[1].split(".")[0] for k in ids(test))


def test_written_set_is_mmad_layout(mvtec_like: Path, tmp_path: Path) -> None:
    data = _synthetic(mvtec_like, "test")
    data.extend(synthetic_set(2, seed=1))
    counts = write_mmad_layout(data, tmp_path, seed=0)
    items = load_mmad(tmp_path)
    assert counts["images"] == len(items) == len(data.images)
    assert counts["questions"] == sum(len(item.conversation) for item in items.values())
    for key, item in items.items():
        assert (tmp_path / key).is_file() and all((tmp_path / t).is_file() for t in item.similar_templates)
        normal = "good" in key
        detection = next(q for q in item.conversation if q.type == "Anomaly Detection")
        assert detection.options[detection.answer] == ("No." if normal else "Yes.")
    assert json.loads((tmp_path / "mmad.json").read_text())  # plain JSON, as MMAD publishes it
