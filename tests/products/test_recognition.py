"""Recognising a registered product from the image alone, and refusing products nobody registered."""

from __future__ import annotations

import pytest
from products.product_helpers import SIZE, normals

from riad_agent.data.synthetic import generate_sample
from riad_agent.products import ProductRegistry

REGISTERED = ("washer", "tile", "fabric")


@pytest.fixture
def line(registry: ProductRegistry) -> ProductRegistry:
    for category in REGISTERED:
        registry.add(category, normals(category, range(4)), pose="fixed" if category == "tile" else None)
    return registry


def test_an_empty_registry_recognises_nothing(registry: ProductRegistry) -> None:
    found = registry.recognise(normals("washer", [9])[0])
    assert (found.product, found.nearest, found.similarity) == (None, None, 0.0)


@pytest.mark.parametrize("category", REGISTERED)
@pytest.mark.parametrize("defect", [None, "scratch", "stain"])
def test_registered_products_are_recognised_normal_or_defective(
    line: ProductRegistry, category: str, defect: str | None
) -> None:
    found = line.recognise(generate_sample(category, defect, 500, SIZE).image)
    assert found.product == category
    assert found.similarity >= line.threshold
    assert found.runner_up is not None and found.runner_up_similarity is not None
    assert found.runner_up_similarity < found.similarity


def test_a_turned_part_of_a_free_product_is_recognised(line: ProductRegistry) -> None:
    turned = generate_sample("washer", None, 501, SIZE).image.rotate(90)
    assert line.recognise(turned).product == "washer"


@pytest.mark.parametrize("category", ["bracket", "bracket-loose"])
def test_an_unregistered_product_is_unknown(line: ProductRegistry, category: str) -> None:
    found = line.recognise(generate_sample(category, None, 502, SIZE).image)
    assert found.product is None
    assert found.nearest in REGISTERED  # still says what it was closest to
    assert found.similarity < line.threshold


def test_one_backbone_pass_serves_recognition_and_typing(line: ProductRegistry) -> None:
    exemplar = generate_sample("washer", "stain", 504, SIZE)
    line.add_defect("washer", "stain", exemplar.image, mask=exemplar.mask)
    sample = generate_sample("washer", "stain", 503, SIZE)
    assert sample.bbox is not None
    features = line.embedder.features(sample.image)
    assert line.recognise(features) == line.recognise(sample.image)
    assert line.nearest_defects("washer", features, sample.bbox) == line.nearest_defects(
        "washer", sample.image, sample.bbox
    )
