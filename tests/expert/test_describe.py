"""The region describer: size, shape, contrast and place of generated defects, read off their true masks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError
from scipy import ndimage

from riad_agent.data.synthetic import _RENDERERS, generate_sample
from riad_agent.expert.describe import (
    RegionDescription,
    describe_regions,
    nearest_reference,
    part_mask,
    reference_misalignment,
)
from riad_agent.schemas import Region

SIZE = 256
SEEDS = (0, 1, 2)
OBJECTS = ("synthetic/washer", "synthetic/bracket")


def _support(category: str, seed: int) -> np.ndarray:
    """The generator's own part mask (its private renderer: the exact truth)."""
    return _RENDERERS[category](np.random.default_rng([seed, 0]), SIZE).support


def _region(mask: np.ndarray, score: float = 1.0) -> Region:
    rows, cols = np.nonzero(mask)
    return Region(
        x0=int(cols.min()),
        y0=int(rows.min()),
        x1=int(cols.max()) + 1,
        y1=int(rows.max()) + 1,
        score=score,
        area=int(mask.sum()),
    )


def _describe(category: str, defect: str, seed: int, **kwargs: object) -> RegionDescription:
    sample = generate_sample(category, defect, seed, SIZE)
    return describe_regions(sample.image, sample.mask.astype(np.float32), [_region(sample.mask)], **kwargs)  # type: ignore[arg-type]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("category", [*OBJECTS, "synthetic/bracket-loose"])
def test_part_mask_finds_the_part_on_a_plain_background(category: str) -> None:
    for seed in SEEDS:
        image = generate_sample(category, None, seed, SIZE).image
        mask = part_mask(image)
        assert mask.shape == (SIZE, SIZE) and mask.dtype == bool
        assert _iou(mask, _support(category, seed)) >= 0.9


@pytest.mark.parametrize("category", ["synthetic/fabric", "synthetic/tile"])
def test_part_mask_of_a_texture_is_the_whole_image(category: str) -> None:
    for seed in SEEDS:
        assert part_mask(generate_sample(category, "hole", seed, SIZE).image).all()


def test_a_washer_keeps_its_hole_out_of_the_part() -> None:
    mask = part_mask(generate_sample("synthetic/washer", None, 0, SIZE).image)
    assert not mask[SIZE // 2, SIZE // 2]  # the washer's inner opening is background
    assert mask[SIZE // 2, SIZE // 2 + int(0.25 * SIZE)]  # the ring is part


@pytest.mark.parametrize(
    ("defect", "shape"),
    [
        ("scratch", "elongated"),
        ("crack", "elongated"),
        ("hole", "compact"),
        ("stain", "compact"),
        ("colour", "compact"),
    ],
)
@pytest.mark.parametrize("category", [*OBJECTS, "synthetic/fabric"])
def test_shape_of_painted_defects(category: str, defect: str, shape: str) -> None:
    for seed in SEEDS:
        assert _describe(category, defect, seed).regions[0].shape == shape


@pytest.mark.parametrize(
    ("defect", "allowed"),
    [
        ("scratch", {"brighter"}),
        ("crack", {"darker"}),
        ("hole", {"darker"}),
        ("stain", {"darker", "colour shift"}),  # brown or blue ink over the part: darker, and tinted
        ("colour", {"colour shift"}),
    ],
)
@pytest.mark.parametrize("category", [*OBJECTS, "synthetic/fabric"])
def test_contrast_of_painted_defects(category: str, defect: str, allowed: set[str]) -> None:
    for seed in SEEDS:
        region = _describe(category, defect, seed).regions[0]
        assert region.contrast in allowed
        assert region.compared_with == "surroundings"
        if region.contrast == "colour shift":
            assert region.hue is not None
        if defect in ("crack", "hole"):
            assert region.lightness_delta < 0
        if defect == "scratch":
            assert region.lightness_delta > 0


@pytest.mark.parametrize("defect", ["scratch", "crack", "hole", "stain", "missing_piece", "colour"])
@pytest.mark.parametrize("category", OBJECTS)
def test_area_is_a_share_of_the_part(category: str, defect: str) -> None:
    for seed in SEEDS:
        sample = generate_sample(category, defect, seed, SIZE)
        region = _describe(category, defect, seed).regions[0]
        truth = 100.0 * sample.mask.sum() / _support(category, seed).sum()
        assert region.area_px == int(sample.mask.sum())
        assert region.area_pct_of_part == pytest.approx(truth, rel=0.1)


@pytest.mark.parametrize("defect", ["missing_piece", "bent"])
@pytest.mark.parametrize("category", OBJECTS)
def test_defects_of_the_rim_are_at_an_edge(category: str, defect: str) -> None:
    for seed in SEEDS:
        # the bracket's holes and notch are edges too: "inner edge"
        assert _describe(category, defect, seed).regions[0].position in ("edge", "inner edge")


@pytest.mark.parametrize("defect", ["hole", "stain", "colour"])
def test_defects_inside_the_washer_ring_are_away_from_its_edges(defect: str) -> None:
    for seed in SEEDS:
        region = _describe("synthetic/washer", defect, seed).regions[0]
        assert region.position == "inside"
        assert region.side is not None  # the ring has no centre: every place on it has a side


def _thirds(value: float, margin: float = 0.04) -> set[str]:
    names = {0: "a", 1: "b", 2: "c"}
    return {
        names[i]
        for i, (low, high) in enumerate(((-1, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 2)))
        if low - margin <= value <= high + margin
    }


@pytest.mark.parametrize("defect", ["hole", "stain", "colour", "missing_piece", "scratch"])
@pytest.mark.parametrize("category", OBJECTS)
def test_side_is_the_place_on_the_part_not_on_the_image(category: str, defect: str) -> None:
    vertical = {"a": "top", "b": "", "c": "bottom"}
    horizontal = {"a": "left", "b": "", "c": "right"}
    for seed in SEEDS:
        sample = generate_sample(category, defect, seed, SIZE)
        support = _support(category, seed)
        rows, cols = np.nonzero(support)
        my, mx = np.nonzero(sample.mask)
        rel_x = (mx.mean() + 0.5 - cols.min()) / (cols.max() + 1 - cols.min())
        rel_y = (my.mean() + 0.5 - rows.min()) / (rows.max() + 1 - rows.min())
        expected = {
            " ".join(w for w in (vertical[v], horizontal[h]) if w) or None
            for v in _thirds(rel_y)
            for h in _thirds(rel_x)
        }
        assert _describe(category, defect, seed).regions[0].side in expected


def test_one_region_reads_as_one_sentence() -> None:
    description = _describe("synthetic/washer", "hole", 0)
    text = description.sentence()
    assert text == description.text
    region = description.regions[0]
    assert text.startswith(f"One region, {region.area_px} px (")
    assert "% of the part), compact, darker than the part around it, " in text
    assert text.endswith(" of the part, away from its edges.")
    assert text.count(".") == 2  # the decimal point and the full stop


def test_a_texture_speaks_of_the_surface() -> None:
    description = _describe("synthetic/fabric", "hole", 0)
    assert description.whole_image
    assert description.part_area_px == SIZE * SIZE
    assert "% of the surface), compact, darker than the surface around it" in description.sentence()


def test_several_regions_strongest_first() -> None:
    sample = generate_sample("synthetic/washer", "hole", 1, SIZE)
    pixels = np.asarray(sample.image).copy()
    support = _support("synthetic/washer", 1)
    # a bright line on the ring's far side from the hole
    rows, cols = np.nonzero(sample.mask)
    centre = SIZE / 2
    far_y, far_x = round(2 * centre - rows.mean()), round(2 * centre - cols.mean())
    line = np.zeros_like(sample.mask)
    line[far_y - 1 : far_y + 2, far_x - 20 : far_x + 20] = True
    line &= support
    pixels[line] = 240
    image = Image.fromarray(pixels)
    heat = sample.mask.astype(np.float32) + 0.8 * line
    regions = [_region(line, score=0.7), _region(sample.mask, score=0.9)]
    description = describe_regions(image, heat, regions)
    assert [r.score for r in description.regions] == [0.9, 0.7]
    assert [r.shape for r in description.regions] == ["compact", "elongated"]
    assert [r.contrast for r in description.regions] == ["darker", "brighter"]
    text = description.sentence()
    assert text.startswith("2 regions, ")
    assert "; the strongest: " in text and " The others: " in text


def test_no_region() -> None:
    image = generate_sample("synthetic/washer", None, 0, SIZE).image
    description = describe_regions(image, np.zeros((SIZE, SIZE), dtype=np.float32), [])
    assert description.regions == [] and description.strongest is None
    assert description.sentence() == "No anomalous region."


def test_a_smooth_map_is_sharpened_by_the_image() -> None:
    """An expert's map is a blurred blob; the scratch inside it is still a bright line."""
    for seed in SEEDS:
        sample = generate_sample("synthetic/washer", "scratch", seed, SIZE)
        heat = ndimage.gaussian_filter(sample.mask.astype(np.float32), 6.0)
        above = heat > 0.2 * heat.max()
        region = describe_regions(sample.image, heat, [_region(above)]).regions[0]
        assert region.shape == "elongated"
        assert region.contrast == "brighter"
        assert 0.4 * sample.mask.sum() <= region.area_px <= 2.0 * sample.mask.sum()
        blurred = describe_regions(sample.image, heat, [_region(above)], refine=False).regions[0]
        assert blurred.area_px > region.area_px


def test_raw_map_at_another_size_with_a_threshold() -> None:
    sample = generate_sample("synthetic/washer", "hole", 2, SIZE)
    raw = 3.0 + 5.0 * sample.mask.astype(np.float32)  # raw distances: nothing is zero
    half = np.asarray(
        Image.fromarray(raw, mode="F").resize((SIZE // 2, SIZE // 2), Image.Resampling.BILINEAR)
    )
    region = describe_regions(sample.image, half, [_region(sample.mask)], threshold=6.0).regions[0]
    assert region.shape == "compact" and region.contrast == "darker"
    assert region.area_px == pytest.approx(sample.mask.sum(), rel=0.25)


def test_a_fixed_part_is_compared_with_its_reference() -> None:
    references = [generate_sample("synthetic/bracket", None, 100 + s, SIZE).image for s in range(4)]
    for defect, expected in (("hole", "darker"), ("colour", "colour shift"), ("missing_piece", "brighter")):
        sample = generate_sample("synthetic/bracket", defect, 3, SIZE)
        reference = nearest_reference(sample.image, references)
        assert reference is not None
        region = describe_regions(
            sample.image, sample.mask.astype(np.float32), [_region(sample.mask)], reference=reference
        ).regions[0]
        assert region.compared_with == "reference"
        assert region.contrast == expected
        assert "than the same place on the reference" in region.sentence() or expected == "colour shift"


def test_a_misaligned_reference_falls_back_to_the_surroundings() -> None:
    sample = generate_sample("synthetic/bracket", "hole", 3, SIZE)
    turned = generate_sample("synthetic/bracket", None, 3, SIZE).image.rotate(15)
    assert reference_misalignment(sample.image, turned) > 9.0
    region = describe_regions(
        sample.image, sample.mask.astype(np.float32), [_region(sample.mask)], reference=turned
    ).regions[0]
    assert region.compared_with == "surroundings"
    assert region.contrast == "darker"


def test_a_known_part_mask_can_be_given() -> None:
    sample = generate_sample("synthetic/washer", "stain", 0, SIZE)
    support = _support("synthetic/washer", 0)
    region = describe_regions(
        sample.image, sample.mask.astype(np.float32), [_region(sample.mask)], mask=support
    ).regions[0]
    assert region.area_pct_of_part == pytest.approx(100.0 * sample.mask.sum() / support.sum(), rel=0.03)
    with pytest.raises(ValueError, match="part mask"):
        describe_regions(
            sample.image, sample.mask.astype(np.float32), [_region(sample.mask)], mask=support[:10]
        )


def test_the_description_is_a_frozen_strict_model() -> None:
    description = _describe("synthetic/washer", "crack", 0)
    again = RegionDescription.model_validate_json(description.model_dump_json())
    assert again == description
    with pytest.raises(ValidationError):
        RegionDescription.model_validate({**description.model_dump(), "extra": 1})
    with pytest.raises(ValidationError):
        description.regions[0].area_px = 3  # type: ignore[misc]


def test_a_large_image_is_described_on_a_smaller_copy() -> None:
    sample = generate_sample("synthetic/washer", "stain", 0, 1024)
    region = _region(sample.mask)
    description = describe_regions(sample.image, sample.mask.astype(np.float32), [region])
    described = description.regions[0]
    assert described.box == (region.x0, region.y0, region.x1, region.y1)
    assert described.area_px == pytest.approx(sample.mask.sum(), rel=0.1)
    assert described.shape == "compact" and described.position == "inside"
    small = _describe("synthetic/washer", "stain", 0).regions[0]
    assert described.area_pct_of_part == pytest.approx(small.area_pct_of_part, rel=0.1)
    assert description.part_area_px == pytest.approx(16 * _support("synthetic/washer", 0).sum(), rel=0.1)


def test_rescaled_to_the_original_image() -> None:
    description = _describe("synthetic/washer", "hole", 0)
    bigger = description.rescaled(2.0, 2.0)
    region, big = description.regions[0], bigger.regions[0]
    assert big.area_px == 4 * region.area_px and bigger.part_area_px == 4 * description.part_area_px
    assert big.box == tuple(2 * v for v in region.box)
    assert big.area_pct_of_part == region.area_pct_of_part and big.shape == region.shape
    assert bigger.sentence().replace(str(big.area_px), str(region.area_px)) == description.sentence()
