"""Inspections that use the product memory: stored references by name, recognition, unknown products."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import pytest
from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner

from riad_agent.components import build_components
from riad_agent.data.synthetic import generate_sample
from riad_agent.errors import UnknownProductError
from riad_agent.graphs.steps import choose_product
from riad_agent.inspector import Inspector
from riad_agent.knowledge.local_store import LocalStore
from riad_agent.products import ImageEmbedder, ProductFiles, ProductRegistry
from riad_agent.settings import Settings

SIZE = 96


@pytest.fixture(scope="module")
def embedder() -> ImageEmbedder:
    return ImageEmbedder()


def _setup(
    tmp_path: Path, embedder: ImageEmbedder, register: bool = True, reasoner: FakeReasoner | None = None
) -> tuple[Inspector, FakeExpert]:
    registry = ProductRegistry(LocalStore(tmp_path / "qdrant"), ProductFiles(tmp_path / "products"), embedder)
    if register:
        washers = [generate_sample("synthetic/washer", None, seed, SIZE).image for seed in range(3)]
        registry.add("washer", washers, knowledge="synthetic/washer", pose="free")
    expert = FakeExpert()
    settings = Settings(data_dir=tmp_path / "data")
    components = build_components(
        settings,
        knowledge=FakeKnowledge(),
        expert=expert,
        reasoner=reasoner or FakeReasoner(),
        products=registry,
    )
    return Inspector(components=components), expert


def _query(tmp_path: Path, category: str, defect: str | None) -> str:
    path = tmp_path / f"{category.split('/')[-1]}-{defect}.png"
    generate_sample(category, defect, 40, SIZE).image.save(path)
    return str(path)


def test_a_registered_name_alone_brings_its_stored_references(
    tmp_path: Path, embedder: ImageEmbedder
) -> None:
    inspector, expert = _setup(tmp_path, embedder)
    report = inspector.inspect(
        {
            "image": _query(tmp_path, "synthetic/washer", "hole"),
            "category": "washer",
            "options": {"use_reasoner": False},
        }
    )
    assert "no_references" not in report.degraded
    assert report.category == "washer" and not report.category_guessed
    assert expert.last_pose == "free"  # the product's registered pose reached the expert
    assert report.pose == "free (registered product)"  # and is credited to it, not to the knowledge
    assert report.knowledge  # its linked knowledge category was searched


def test_without_name_or_references_the_product_is_recognised_and_marked_guessed(
    tmp_path: Path, embedder: ImageEmbedder
) -> None:
    inspector, _ = _setup(tmp_path, embedder)
    report = inspector.inspect(
        {"image": _query(tmp_path, "synthetic/washer", None), "options": {"use_reasoner": False}}
    )
    assert report.category == "washer" and report.category_guessed
    assert report.category_similarity is not None and report.category_similarity >= 0.93
    assert "(guessed, similarity" in report.summary()
    assert "no_references" not in report.degraded and report.verdict != "uncertain"


def test_an_unregistered_product_is_unknown_and_uncertain_never_guessed(
    tmp_path: Path, embedder: ImageEmbedder
) -> None:
    inspector, _ = _setup(tmp_path, embedder)
    report = inspector.inspect(
        {"image": _query(tmp_path, "synthetic/tile", None), "options": {"use_reasoner": False}}
    )
    assert report.verdict == "uncertain" and not report.category_guessed and report.category is None
    assert "unknown_product" in report.degraded and report.knowledge == []
    assert any("register it" in note for note in report.degradation_notes())


def test_an_empty_memory_makes_every_unnamed_product_unknown(tmp_path: Path, embedder: ImageEmbedder) -> None:
    inspector, _ = _setup(tmp_path, embedder, register=False)
    report = inspector.inspect(
        {"image": _query(tmp_path, "synthetic/washer", None), "options": {"use_reasoner": False}}
    )
    assert "unknown_product" in report.degraded and report.verdict == "uncertain"


def test_labelled_exemplars_type_the_defect_and_say_so(tmp_path: Path, embedder: ImageEmbedder) -> None:
    inspector, _ = _setup(tmp_path, embedder)
    registry = inspector.components.products.get()
    for seed in range(2):
        for kind in ("hole", "colour"):
            sample = generate_sample("synthetic/washer", kind, 300 + seed, SIZE)
            registry.add_defect("washer", kind, sample.image, mask=sample.mask)
    report = inspector.inspect(
        {
            "image": _query(tmp_path, "synthetic/washer", "colour"),
            "category": "washer",
            "options": {"use_reasoner": False},
        }
    )
    assert report.verdict == "anomalous"
    assert "labelled" in report.explanation and "colour" in report.explanation
    if report.defect_type is not None:  # stated only when one type clearly leads
        assert report.defect_type == "colour"


class _NoImagesReasoner(FakeReasoner):
    takes_exemplar_images = False  # as the builtin model: crops would not be shown


@pytest.mark.parametrize("images", [True, False])
def test_the_reasoner_hears_the_exemplars_and_gets_crops_only_if_it_shows_them(
    tmp_path: Path, embedder: ImageEmbedder, images: bool
) -> None:
    reasoner = FakeReasoner() if images else _NoImagesReasoner()
    inspector, _ = _setup(tmp_path, embedder, reasoner=reasoner)
    registry = inspector.components.products.get()
    for seed in range(2):
        for kind in ("hole", "colour"):
            sample = generate_sample("synthetic/washer", kind, 300 + seed, SIZE)
            registry.add_defect("washer", kind, sample.image, mask=sample.mask)
    question = {"text": "What is the type of the defect?", "options": {"A": "Hole.", "B": "Colour defect."}}
    inspector.inspect(
        {"image": _query(tmp_path, "synthetic/washer", "colour"), "category": "washer", "question": question}
    )
    sent = reasoner.calls[-1]
    assert {hint.defect_type for hint in sent.exemplars} == {"hole", "colour"}
    assert all((hint.crop is not None) == images for hint in sent.exemplars)


def test_exemplar_typing_states_a_type_only_with_a_clear_lead() -> None:
    from riad_agent.evidence import TYPING_MARGIN, ExemplarTyping

    clear = ExemplarTyping.of("washer", [("crack", 0.70), ("hole", 0.70 + 2 * TYPING_MARGIN)])
    assert clear.defect_type == "hole" and clear.matches[0][0] == "hole"
    close = ExemplarTyping.of("washer", [("crack", 0.80), ("hole", 0.80 + TYPING_MARGIN / 2)])
    assert close.defect_type is None and "do not tell its type apart" in close.sentence()
    assert ExemplarTyping.of("washer", [("crack", 0.5)]).defect_type == "crack"


def test_a_registered_name_spelled_with_underscores_is_that_product() -> None:
    def never() -> NoReturn:
        raise AssertionError("a named product is not recognised from the image")

    registered = {"solar-cell", "washer"}
    assert choose_product(registered, "solar_cell", never).name == "solar-cell"
    assert choose_product(registered, "solar-cell", never).name == "solar-cell"
    # a name no registered product spells is a knowledge category or a new product: no choice
    assert choose_product(registered, "solar_cells", never).name is None


def test_a_typo_of_a_registered_name_without_references_says_which_was_meant(
    tmp_path: Path, embedder: ImageEmbedder
) -> None:
    inspector, _ = _setup(tmp_path, embedder)
    registry = inspector.components.products.get()
    registry.add("solar-mono", [generate_sample("synthetic/tile", None, 5, SIZE).image])
    image = _query(tmp_path, "synthetic/tile", None)
    with pytest.raises(UnknownProductError, match="did you mean the registered product 'solar-mono'"):
        inspector.inspect({"image": image, "category": "solar-mon", "options": {"use_reasoner": False}})
    # a name close to no registered product nor knowledge category: a new product, uncertain and why
    report = inspector.inspect({"image": image, "category": "solar-poly", "options": {"use_reasoner": False}})
    assert report.verdict == "uncertain" and "no_knowledge_for_category" in report.degraded
    assert "'solar-poly' is neither a registered product nor a knowledge category" in report.explanation
    # with references the name is a new product's label, however close to a registered one
    given = inspector.inspect(
        {"image": image, "category": "solar-mon", "references": [image], "options": {"use_reasoner": False}}
    )
    assert given.category == "solar-mon"
