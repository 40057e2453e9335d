"""The expert finds synthetic defects where their masks say, with calibrated scores and typed errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from riad_agent.backbones import load_backbone, register_backbone, torch_module_backbone
from riad_agent.data.synthetic import generate_sample
from riad_agent.errors import InvalidImageError, ModelLoadError, ReferenceImageError
from riad_agent.eval.expert_metrics import auroc
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.protocols import Expert

SIZE = 192


@pytest.fixture(scope="module")
def expert() -> PatchCoreExpert:
    torch.set_num_threads(2)
    return PatchCoreExpert(ExpertConfig(features={"image_size": SIZE}))


def _refs(category: str, count: int) -> list[Image.Image]:
    return [generate_sample(category, None, seed=s, size=SIZE).image for s in range(count)]


@pytest.fixture(scope="module")
def washer_refs() -> list[Image.Image]:
    return _refs("synthetic/washer", 6)


def test_expert_satisfies_the_protocol(expert: PatchCoreExpert) -> None:
    assert isinstance(expert, Expert)
    assert expert.backbone_id.startswith("efficientnet-lite0")


@pytest.mark.parametrize("defect", ["scratch", "hole", "stain", "missing_piece", "colour", "crack"])
def test_washer_defect_is_found_inside_its_mask(
    expert: PatchCoreExpert, washer_refs: list, defect: str
) -> None:
    sample = generate_sample("synthetic/washer", defect, seed=100, size=SIZE)
    result = expert.analyse(sample.image, washer_refs)
    assert result.score > 0.5
    assert result.pixel_scores.shape == sample.mask.shape
    assert auroc(sample.mask.ravel(), result.pixel_scores.ravel()) > 0.9
    peak = np.unravel_index(np.argmax(result.pixel_scores), result.pixel_scores.shape)
    near_mask = np.zeros_like(sample.mask)
    x0, y0, x1, y1 = sample.bbox
    near_mask[max(0, y0 - 8) : y1 + 8, max(0, x0 - 8) : x1 + 8] = True
    assert near_mask[peak], "the strongest response is at the defect"
    assert result.regions, "an anomalous region is reported"
    top = result.regions[0]
    assert sample.mask[top.y0 : top.y1, top.x0 : top.x1].any(), "the top region overlaps the mask"
    assert 0.5 < top.score <= 1.0


def test_reasoner_prior_is_the_smoothed_grid_peaking_at_the_defect(
    expert: PatchCoreExpert, washer_refs: list
) -> None:
    sample = generate_sample("synthetic/washer", "hole", seed=101, size=SIZE)
    result = expert.analyse(sample.image, washer_refs)
    prior = result.prior_map()
    assert result.prior_scores is not None and prior.shape == (SIZE, SIZE)  # network input size
    assert prior.dtype == np.float32 and prior.min() >= 0.0 and prior.max() <= 1.0
    assert prior.max() > 0.5  # above the image threshold, like the score
    peak = np.unravel_index(np.argmax(prior), prior.shape)
    x0, y0, x1, y1 = sample.bbox
    assert y0 - 12 <= peak[0] < y1 + 12 and x0 - 12 <= peak[1] < x1 + 12
    # without the guided filter the pixel map is that smoothed grid and serves as the prior itself
    plain = PatchCoreExpert(ExpertConfig(features={"image_size": SIZE}, guide_radius=0))
    gaussian = plain.analyse(sample.image, washer_refs)
    assert gaussian.prior_scores is None
    assert np.allclose(gaussian.prior_map(), prior, atol=1e-5)


@pytest.mark.parametrize("seed", [200, 201, 202])
def test_normal_washers_score_below_half(expert: PatchCoreExpert, washer_refs: list, seed: int) -> None:
    result = expert.analyse(
        generate_sample("synthetic/washer", None, seed=seed, size=SIZE).image, washer_refs
    )
    assert result.score < 0.5
    assert result.raw_score < result.threshold
    assert not result.regions


@pytest.mark.parametrize("category", ["synthetic/fabric", "synthetic/tile"])
def test_textures_separate_normal_from_defective(expert: PatchCoreExpert, category: str) -> None:
    refs = _refs(category, 4)
    normal = expert.analyse(generate_sample(category, None, seed=300, size=SIZE).image, refs)
    defective = generate_sample(category, "hole", seed=300, size=SIZE)
    result = expert.analyse(defective.image, refs)
    assert normal.score < 0.5 < result.score
    assert auroc(defective.mask.ravel(), result.pixel_scores.ravel()) > 0.9


def test_single_reference_uses_augmented_views(expert: PatchCoreExpert) -> None:
    refs = _refs("synthetic/washer", 1)
    bank = expert.fit(refs)
    assert bank.meta["calibration"] == "augmented-views"
    assert (
        expert.analyse(generate_sample("synthetic/washer", "hole", seed=5, size=SIZE).image, refs).score > 0.5
    )
    assert (
        expert.analyse(generate_sample("synthetic/washer", None, seed=5, size=SIZE).image, refs).score < 0.5
    )


def test_grayscale_and_differently_sized_queries_are_accepted(
    expert: PatchCoreExpert, washer_refs: list
) -> None:
    sample = generate_sample("synthetic/washer", "hole", seed=100, size=SIZE)
    gray = sample.image.convert("L").resize((240, 200))
    result = expert.analyse(gray, washer_refs)
    assert result.pixel_scores.shape == (200, 240)
    assert result.score > 0.5
    png = result.heatmap()
    assert png is not None and png.startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(png)).size == (240, 200)


def test_references_of_other_sizes_but_same_shape_are_resized(expert: PatchCoreExpert) -> None:
    refs = [generate_sample("synthetic/washer", None, seed=s, size=s * 16 + 160).image for s in range(3)]
    assert expert.analyse(generate_sample("synthetic/washer", None, seed=50).image, refs).score < 0.5


def test_wrong_inputs_raise_typed_errors(expert: PatchCoreExpert, washer_refs: list) -> None:
    query = washer_refs[0]
    with pytest.raises(ReferenceImageError, match="no reference"):
        expert.analyse(query, [])
    with pytest.raises(ReferenceImageError):
        expert.analyse(query, [query, "not an image"])  # type: ignore[list-item]
    with pytest.raises(ReferenceImageError, match="shape"):
        expert.analyse(query, [query, Image.new("RGB", (400, 100))])
    with pytest.raises(InvalidImageError):
        expert.analyse(np.zeros((8, 8, 3)), washer_refs)  # type: ignore[arg-type]
    with pytest.raises(InvalidImageError):
        expert.analyse(b"\x89PNG not really", washer_refs)  # type: ignore[arg-type]


def test_backbone_registry_plugs_in_and_reports_load_errors() -> None:
    with pytest.raises(ModelLoadError, match="unknown expert backbone"):
        load_backbone("no-such-net")
    with pytest.raises(ModelLoadError, match="timm"):
        load_backbone("timm:resnet18")  # timm is not installed in the test environment

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, stride=4, padding=1)
            self.deep = nn.Conv2d(8, 8, 3, stride=2, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.deep(torch.relu(self.stem(x)))

    torch.manual_seed(0)
    register_backbone(
        "tiny-test", lambda: torch_module_backbone("tiny-test", Tiny(), ["stem", "deep"], [4, 8])
    )
    tiny = PatchCoreExpert(
        ExpertConfig(backbone="tiny-test", features={"image_size": 64, "grid_stride": None})
    )
    refs = [generate_sample("synthetic/tile", None, seed=s, size=64).image for s in range(2)]
    result = tiny.analyse(refs[0], refs)
    assert result.patch_scores.shape == (16, 16) and result.backbone == "tiny-test"
    with pytest.raises(ModelLoadError, match="no layer"):
        register_backbone("broken", lambda: torch_module_backbone("broken", Tiny(), ["nope"], [4]))
        load_backbone("broken")


def test_a_backbone_keeps_the_maps_of_recent_single_images_by_content() -> None:
    from riad_agent.backbones.feature_backbone import RECENT_INPUTS

    torch.manual_seed(0)
    backbone = torch_module_backbone(
        "tiny-kept", nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1)), ["0"], [2]
    )
    calls: list[int] = []
    backbone.module.register_forward_pre_hook(lambda _m, inputs: calls.append(inputs[0].shape[0]))
    one, other = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    first = backbone(one)
    again = backbone(one.clone())  # equal values, another tensor: the same maps, no second pass
    assert calls == [1] and torch.equal(first[0], again[0])
    again.clear()  # a caller's list is its own
    assert len(backbone(one)) == 1
    backbone(other)
    pair = torch.cat([one, other])
    backbone(pair)
    backbone(pair)  # batches are not kept (the references of a bank)
    assert calls == [1, 1, 2, 2]
    for _ in range(RECENT_INPUTS):
        backbone(torch.rand(1, 3, 32, 32))
    backbone(one)  # pushed out by newer images: a new pass
    assert calls[-1] == 1 and len(calls) == 4 + RECENT_INPUTS + 1


def test_efficientnet_lite2_is_registered_with_the_default_taps() -> None:
    from riad_agent.backbones import available_backbones

    assert "efficientnet-lite2" in available_backbones()
    try:
        backbone = load_backbone("efficientnet-lite2")
    except ModelLoadError as exc:  # the optional wheel is missing: the error names the extra
        assert "riad-agent[lite2]" in str(exc)
        return
    assert backbone.backbone_id == "efficientnet-lite2/s4s8s16s32"
    assert tuple(backbone.strides) == (4, 8, 16, 32)


def test_a_reference_of_another_product_is_named_and_only_an_anomalous_verdict_survives(
    expert: PatchCoreExpert, washer_refs: list
) -> None:
    clean = washer_refs[:4]
    calibration = expert.fit(clean).calibration
    assert calibration["outlier_ratio"] < expert.config.reference_disagreement
    assert calibration["typical_outlier_ratio"] < expert.config.reference_typicality
    assert (
        expert.analyse(generate_sample("synthetic/washer", None, seed=50, size=SIZE).image, clean).cautions
        == []
    )
    mixed = [*washer_refs[:3], generate_sample("synthetic/bracket", None, seed=1, size=SIZE).image]
    result = expert.analyse(generate_sample("synthetic/washer", None, seed=50, size=SIZE).image, mixed)
    assert result.cautions and result.cautions[0].startswith(
        "reference 4 of 4 looks unlike the others overall"
    )
    assert (
        result.notes == []
    )  # the score is still computed: an anomalous verdict needs no trust in the odd one


def test_with_two_references_no_reference_is_called_the_odd_one(
    expert: PatchCoreExpert, washer_refs: list
) -> None:
    pair = [washer_refs[0], generate_sample("synthetic/bracket", None, seed=1, size=SIZE).image]
    calibration = expert.fit(pair).calibration
    assert calibration["outlier_ratio"] == 0.0 and calibration["typical_outlier_ratio"] == 0.0


def test_a_defective_reference_is_named_as_having_a_place_unlike_the_others(
    expert: PatchCoreExpert, washer_refs: list
) -> None:
    mixed = [*washer_refs[:3], generate_sample("synthetic/washer", "hole", seed=5, size=SIZE).image]
    cautions = expert.reference_cautions(expert.fit(mixed), mixed)
    assert cautions and cautions[0].startswith("reference 4 of 4 has a place unlike the others")
    # the bank is built in content order (one bank for any order); the number is the caller's
    turned = mixed[::-1]
    assert expert.reference_cautions(expert.fit(turned), turned)[0].startswith("reference 1 of 4 has a place")


def test_the_same_references_in_another_order_give_the_same_scores(washer_refs: list) -> None:
    """No bank depends on the order of its references (jitter seeds, coreset): a cached bank, keyed by
    content alone, would otherwise answer by whichever order came first."""
    fixed = ExpertConfig(pose="fixed", heatmap=False, features={"image_size": SIZE})  # jittered copies
    refs = washer_refs[:4]
    query = generate_sample("synthetic/washer", "hole", seed=60, size=SIZE).image
    scores = {
        round(PatchCoreExpert(fixed).analyse(query, order).raw_score, 6) for order in (refs, refs[::-1])
    }
    assert len(scores) == 1


def test_findings_of_a_flagged_part_describe_its_region_in_words(
    expert: PatchCoreExpert, washer_refs: list
) -> None:
    from riad_agent.evidence import ExpertFindings

    shapes = []
    for seed in range(11, 17):
        scratched = generate_sample("synthetic/washer", "scratch", seed=seed, size=SIZE).image
        findings = ExpertFindings.of(expert.analyse(scratched, washer_refs), heatmap=False)
        assert findings.score > 0.55 and findings.description is not None
        top = findings.description.regions[0]
        assert top.area_px > 0
        shapes.append(top.shape)
    # a wide region is cut to its core (max_region_share), which can leave a short piece of a scratch
    assert shapes.count("elongated") >= 5, shapes
    assert findings.description.sentence().startswith(
        ("One region", f"{len(findings.description.regions)} regions")
    )
    normal = generate_sample("synthetic/washer", None, seed=60, size=SIZE).image
    assert ExpertFindings.of(expert.analyse(normal, washer_refs), heatmap=False).description is None
