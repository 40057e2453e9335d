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


def test_the_embedder_keeps_recent_images_features_by_content(line: ProductRegistry) -> None:
    from riad_agent.products.embedding import RECENT_FEATURES

    embedder = line.embedder
    passes: list[int] = []
    original = embedder._maps

    def counted(images):  # type: ignore[no-untyped-def]
        passes.append(len(images))
        return original(images)

    embedder._maps = counted  # type: ignore[method-assign]
    embedder._recent.clear()  # the embedder is shared with earlier tests
    try:
        sample = generate_sample("washer", "stain", 503, SIZE).image
        first = line.recognise(sample)
        again = line.recognise(sample.copy())  # the same pixels in another object: no second pass
        assert again == first and len(passes) == 1
        others = [generate_sample("washer", None, 600 + i, SIZE).image for i in range(RECENT_FEATURES)]
        for other in others:
            embedder.features(other)
        assert len(passes) == 1 + RECENT_FEATURES
        embedder.features(sample)  # pushed out by the others: computed again
        assert len(passes) == 2 + RECENT_FEATURES
    finally:
        del embedder._maps


def test_recognition_the_expert_and_typing_read_one_backbone_pass_of_the_query(
    line: ProductRegistry,
) -> None:
    from riad_agent.expert import ExpertConfig, PatchCoreExpert
    from riad_agent.products.embedding import EMBED_SIZE

    backbone = line.embedder.backbone
    expert = PatchCoreExpert(ExpertConfig(features={"image_size": EMBED_SIZE}, heatmap=False))
    assert expert.extractor.backbone is backbone  # one backbone object per process
    references = line.reference_images("washer")
    expert.fit(references)
    labelled = generate_sample("washer", "stain", 76, SIZE)
    line.add_defect("washer", "stain", labelled.image, mask=labelled.mask)
    single_passes: list[int] = []
    hook = backbone.module.register_forward_pre_hook(
        lambda _m, inputs: single_passes.append(1) if inputs[0].shape[0] == 1 else None
    )
    try:
        query = generate_sample("washer", "stain", 77, SIZE)
        assert line.recognise(query.image).product == "washer"
        assert expert.analyse(query.image, references).score > 0.5
        assert line.nearest_defects("washer", query.image, query.bbox)[0].defect_type == "stain"
        assert len(single_passes) == 1
        expert.analyse(generate_sample("washer", "stain", 78, SIZE).image, references)
        assert len(single_passes) == 2  # another image is a new pass
    finally:
        hook.remove()
