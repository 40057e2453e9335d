"""The product registry on the embedded store: round trip, extend, remove, labelled defects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from products.product_helpers import SIZE, normals, open_registry

from riad_agent.data.synthetic import generate_sample
from riad_agent.errors import (
    ConfigurationError,
    InvalidImageError,
    InvalidRequestError,
    ProductExistsError,
    ProductsChangedError,
    UnknownProductError,
)
from riad_agent.expert import ExpertConfig, FeatureConfig, PatchCoreExpert
from riad_agent.knowledge.embed import HashingEmbedder
from riad_agent.knowledge.loaders import load_riad
from riad_agent.knowledge.local_store import LocalStore
from riad_agent.knowledge.store import QdrantKnowledgeBase
from riad_agent.products import ImageEmbedder, ProductFiles, ProductRegistry

KNOWLEDGE = Path(__file__).parents[1] / "knowledge" / "fixtures" / "base"


def _stored(root: Path) -> set[str]:
    return {p.stem for p in (root / "products").glob("*.png")}


def test_round_trip_through_a_fresh_store_object(tmp_path: Path, embedder: ImageEmbedder) -> None:
    first = open_registry(tmp_path, embedder)
    added = first.add("Washer", normals("washer", range(3)), knowledge="mvtec/metal_nut", pose="free")
    first.source.close()

    again = open_registry(tmp_path, embedder).show("washer")
    assert again == added
    assert (again.name, again.knowledge, again.pose) == ("washer", "mvtec/metal_nut", "free")
    assert len(again.references) == 3
    assert {r.sha256 for r in again.references} == _stored(tmp_path)  # content-addressed copies
    pictures = open_registry(tmp_path, embedder).reference_images("washer")
    assert [p.size for p in pictures] == [(SIZE, SIZE)] * 3


def test_adding_twice_is_refused_and_extend_adds_only_new_images(registry: ProductRegistry) -> None:
    registry.add("tile", normals("tile", range(2)), pose="fixed")
    with pytest.raises(ProductExistsError, match="already registered"):
        registry.add("TILE", normals("tile", range(2, 4)))
    extended = registry.extend("tile", normals("tile", [1, 2, 3]))  # seed 1 is already there
    assert len(extended.references) == 4
    assert extended.pose == "fixed"


def test_unknown_product_names_the_registered_ones(registry: ProductRegistry) -> None:
    with pytest.raises(UnknownProductError, match="none yet"):
        registry.show("washer")
    registry.add("washer", normals("washer", range(1)))
    with pytest.raises(UnknownProductError, match="registered: washer"):
        registry.extend("wahser", normals("washer", range(1, 2)))
    with pytest.raises(InvalidRequestError, match="not allowed"):
        registry.add("../etc", normals("washer", range(1)))
    with pytest.raises(InvalidRequestError, match="at least one"):
        registry.add("fabric", [])


def test_remove_a_product_deletes_its_points_and_images(tmp_path: Path, registry: ProductRegistry) -> None:
    registry.add("washer", normals("washer", range(2)))
    registry.add("tile", normals("tile", range(2)), pose="fixed")
    kept = {r.sha256 for r in registry.show("tile").references}
    assert registry.remove("washer") == 1 + 2 * 4  # record + 2 references x 4 quarter turns
    assert [p.name for p in registry.list()] == ["tile"]
    assert _stored(tmp_path) == kept
    with pytest.raises(UnknownProductError):
        registry.remove("washer")


def test_defect_with_a_mask_takes_the_masks_box(tmp_path: Path, registry: ProductRegistry) -> None:
    registry.add("washer", normals("washer", range(2)))
    sample = generate_sample("washer", "scratch", 7, SIZE)
    exemplar = registry.add_defect("washer", "Scratch", sample.image, mask=sample.mask)
    assert exemplar.box == sample.bbox
    assert (exemplar.defect_type, exemplar.region_source) == ("scratch", "mask")
    assert {exemplar.sha256, exemplar.mask_sha256} <= _stored(tmp_path)
    assert registry.show("washer").defect_counts() == {"scratch": 1}


def test_a_mask_of_another_size_or_empty_is_refused(registry: ProductRegistry) -> None:
    registry.add("washer", normals("washer", range(1)))
    sample = generate_sample("washer", "hole", 3, SIZE)
    with pytest.raises(InvalidImageError, match="the mask is 48x48 px but the image is 96x96"):
        registry.add_defect("washer", "hole", sample.image, mask=np.ones((48, 48), dtype=bool))
    with pytest.raises(InvalidRequestError, match="marks no pixel"):
        registry.add_defect("washer", "hole", sample.image, mask=np.zeros((SIZE, SIZE), dtype=bool))
    with pytest.raises(InvalidRequestError, match="give a mask"):
        registry.add_defect("washer", "hole", sample.image)
    assert registry.show("washer").defects == []


def test_defect_without_a_mask_takes_the_experts_strongest_region(registry: ProductRegistry) -> None:
    registry.add("washer", [generate_sample("washer", None, s, 128).image for s in range(4)])
    sample = generate_sample("washer", "stain", 51, 128)
    expert = PatchCoreExpert(ExpertConfig(features=FeatureConfig(image_size=128)))
    exemplar = registry.add_defect("washer", "stain", sample.image, expert=expert)
    assert exemplar.region_source == "expert" and exemplar.mask_sha256 is None
    x0, y0, x1, y1 = exemplar.box
    assert sample.bbox is not None
    bx0, by0, bx1, by1 = sample.bbox
    overlap = max(0, min(x1, bx1) - max(x0, bx0)) * max(0, min(y1, by1) - max(y0, by0))
    assert overlap >= 0.5 * (bx1 - bx0) * (by1 - by0)  # the region covers most of the stain


def test_remove_one_defect_type_keeps_the_others(tmp_path: Path, registry: ProductRegistry) -> None:
    registry.add("washer", normals("washer", range(1)))
    scratch = generate_sample("washer", "scratch", 7, SIZE)
    stain = generate_sample("washer", "stain", 8, SIZE)
    registry.add_defect("washer", "scratch", scratch.image, mask=scratch.mask)
    gone = registry.add_defect("washer", "stain", stain.image, mask=stain.mask)
    with pytest.raises(InvalidRequestError, match="no 'crack' exemplars; its defect types: scratch, stain"):
        registry.remove("washer", "crack")
    assert registry.remove("washer", "stain") == 1
    assert registry.show("washer").defect_counts() == {"scratch": 1}
    assert gone.sha256 not in _stored(tmp_path) and gone.mask_sha256 not in _stored(tmp_path)


def test_nearest_defects_types_a_region_by_its_exemplars(registry: ProductRegistry) -> None:
    registry.add("washer", normals("washer", range(1)))
    for seed in (10, 11):
        for kind in ("scratch", "stain"):
            sample = generate_sample("washer", kind, seed, SIZE)
            registry.add_defect("washer", kind, sample.image, mask=sample.mask)
    query = generate_sample("washer", "stain", 30, SIZE)
    assert query.bbox is not None
    matches = registry.nearest_defects("washer", query.image, query.bbox)
    assert matches[0].defect_type == "stain"
    # the exemplars' signatures are kept between calls, and a new exemplar is seen at once
    assert {m.defect_type for m in registry.nearest_defects("washer", query.image, query.bbox)} == {
        "scratch",
        "stain",
    }
    hole = generate_sample("washer", "hole", 12, SIZE)
    registry.add_defect("washer", "hole", hole.image, mask=hole.mask)
    kinds = {m.defect_type for m in registry.nearest_defects("washer", query.image, query.bbox)}
    assert kinds == {"scratch", "stain", "hole"}
    registry.remove("washer", "hole")
    assert "hole" not in {m.defect_type for m in registry.nearest_defects("washer", query.image, query.bbox)}


def test_products_stored_by_an_earlier_version_are_refused_with_the_way_out(
    tmp_path: Path, registry: ProductRegistry
) -> None:
    class EarlierEmbedder(ImageEmbedder):  # the same backbone, the box-mean signatures of before
        @property
        def embedder_id(self) -> str:
            return f"{self.backbone.backbone_id}@{self.image_size}+words"

    earlier = EarlierEmbedder(registry.embedder.backbone)
    old = ProductRegistry(
        LocalStore(tmp_path / "old" / "qdrant"), ProductFiles(tmp_path / "old" / "products"), earlier
    )
    old.add("washer", normals("washer", range(1)))
    now = ProductRegistry(
        LocalStore(tmp_path / "old" / "qdrant"),
        ProductFiles(tmp_path / "old" / "products"),
        registry.embedder,
    )
    with pytest.raises(ConfigurationError, match="stored by an earlier riad-agent .*riad product reembed"):
        now.list()


def test_products_of_an_earlier_embedder_are_reembedded_from_their_stored_images(
    tmp_path: Path, registry: ProductRegistry
) -> None:
    backbone = registry.embedder.backbone
    root = tmp_path / "old"
    earlier = ProductRegistry(  # the 224 px embedder of riad-agent before one pass served both
        LocalStore(root / "qdrant"), ProductFiles(root / "products"), ImageEmbedder(backbone, image_size=224)
    )
    earlier.add("washer", normals("washer", range(2)), knowledge="mvtec/metal_nut", pose="free")
    scratch = generate_sample("washer", "scratch", 11, SIZE)
    stain = generate_sample("washer", "stain", 12, SIZE)
    expert = PatchCoreExpert(ExpertConfig(features=FeatureConfig(image_size=128), heatmap=False))
    earlier.add_defect("washer", "scratch", scratch.image, mask=scratch.mask)
    earlier.add_defect("washer", "stain", stain.image, expert=expert)
    before = earlier.show("washer")
    earlier.source.close()

    now = ProductRegistry(LocalStore(root / "qdrant"), ProductFiles(root / "products"), registry.embedder)
    with pytest.raises(ConfigurationError, match="stored by an earlier riad-agent .*riad product reembed"):
        now.list()
    assert [p.name for p in now.stored_products()] == ["washer"]
    with pytest.raises(InvalidRequestError, match="needs the expert"):
        now.reembed()
    assert now.reembed(expert) == {"products": 1, "references": 2, "defects": 2}

    after = now.show("washer")  # readable again, everything kept but the embedder
    assert after.embedder == registry.embedder.embedder_id != before.embedder
    assert after.model_dump(exclude={"embedder"}) == before.model_dump(exclude={"embedder"})
    assert now.recognise(normals("washer", [40])[0]).product == "washer"
    query = generate_sample("washer", "scratch", 13, SIZE)
    assert now.nearest_defects("washer", query.image, query.bbox)[0].defect_type == "scratch"
    assert now.reembed(expert)["defects"] == 2  # running it again changes nothing


def test_products_of_another_backbone_are_reembedded_into_a_collection_of_its_sizes(
    tmp_path: Path, registry: ProductRegistry
) -> None:
    registry.add("washer", normals("washer", range(2)))
    scratch = generate_sample("washer", "scratch", 11, SIZE)
    registry.add_defect("washer", "scratch", scratch.image, mask=scratch.mask)
    fewer = ImageEmbedder("efficientnet-lite0/s8s16s32")  # other taps: other vector sizes
    assert fewer.dimension != registry.embedder.dimension
    moved = ProductRegistry(LocalStore(tmp_path / "qdrant"), ProductFiles(tmp_path / "products"), fewer)
    with pytest.raises(ConfigurationError, match="embedded with efficientnet-lite0/s4s8s16s32"):
        moved.list()
    assert moved.reembed() == {"products": 1, "references": 2, "defects": 1}  # masks only: no expert
    assert moved.recognise(normals("washer", [40])[0]).product == "washer"
    query = generate_sample("washer", "scratch", 13, SIZE)
    assert moved.nearest_defects("washer", query.image, query.bbox)[0].defect_type == "scratch"


def test_reembedding_refuses_to_drop_what_another_process_wrote_meanwhile(
    tmp_path: Path, registry: ProductRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.add("washer", normals("washer", range(1)))
    other = open_registry(tmp_path, registry.embedder)  # another process's view of the same store
    embed_one, written = registry._reference_vectors, []

    def meanwhile(*args: object, **kwargs: object) -> object:
        if not written:  # while the washer is being embedded, the other process adds a tile
            written.append(other.add("tile", normals("tile", range(1))))
        return embed_one(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(registry, "_reference_vectors", meanwhile)
    with pytest.raises(ProductsChangedError, match="run `riad product reembed` again"):
        registry.reembed()
    assert [p.name for p in open_registry(tmp_path, registry.embedder).list()] == ["tile", "washer"]
    other.source.close()


def test_vectors_of_another_backbone_are_refused(tmp_path: Path, registry: ProductRegistry) -> None:
    registry.add("washer", normals("washer", range(1)))

    class OtherBackbone(ImageEmbedder):  # as if RIAD_EXPERT_BACKBONE named another network
        @property
        def embedder_id(self) -> str:
            return f"other-net/s8s16@{self.image_size}+cells+words"

    other = OtherBackbone(registry.embedder.backbone)
    moved = ProductRegistry(LocalStore(tmp_path / "qdrant"), ProductFiles(tmp_path / "products"), other)
    with pytest.raises(
        ConfigurationError, match="embedded with efficientnet-lite0.*not other-net.*RIAD_EXPERT_BACKBONE"
    ):
        moved.list()
    # the way out the error names: remove every product, then register again with the new embedder
    assert moved.remove("washer") > 0
    moved.add("washer", normals("washer", range(1)))
    assert [p.name for p in moved.list()] == ["washer"]


def test_knowledge_writes_keep_the_products_and_products_keep_the_knowledge(
    tmp_path: Path, registry: ProductRegistry
) -> None:
    registry.add("washer", normals("washer", range(1)))
    kb = QdrantKnowledgeBase(LocalStore(tmp_path / "qdrant"), HashingEmbedder())
    try:
        kb.ingest(load_riad(KNOWLEDGE), scope="test")
        categories = kb.categories()
        assert categories
        assert [p.name for p in open_registry(tmp_path, registry.embedder).list()] == ["washer"]
        registry.add("tile", normals("tile", range(1)))
        assert kb.categories() == categories
    finally:
        kb.close()
