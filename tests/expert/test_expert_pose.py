"""Pose handling, few-reference calibration, the refused and uncertain queries, and regions of the expert."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from riad_agent.data.synthetic import POSE_CATEGORIES, generate_sample
from riad_agent.errors import InvalidImageError, InvalidRequestError
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.expert.calibration import calibrate
from riad_agent.expert.pose import corner_content, fixed_cutoff, infer_pose, rotated

SIZE = 160


@pytest.fixture(scope="module")
def expert() -> PatchCoreExpert:
    torch.set_num_threads(2)
    return PatchCoreExpert(ExpertConfig(features={"image_size": SIZE}, heatmap=False))


def _refs(category: str, count: int, offset: int = 0) -> list[Image.Image]:
    return [generate_sample(category, None, seed=offset + s, size=SIZE).image for s in range(count)]


@pytest.mark.parametrize("category", POSE_CATEGORIES)
def test_pose_categories_are_deterministic_and_misplaced_is_fixed_only(category: str) -> None:
    a = generate_sample(category, "stain", seed=3, size=128)
    b = generate_sample(category, "stain", seed=3, size=128)
    assert a.image.tobytes() == b.image.tobytes() and a.mask.any()
    if category == "synthetic/bracket":
        moved = generate_sample(category, "misplaced", seed=3, size=128)
        assert moved.mask.sum() > 100
    else:
        with pytest.raises(InvalidRequestError):
            generate_sample(category, "misplaced", seed=3, size=128)


def test_pose_is_inferred_from_the_references_spread() -> None:
    assert infer_pose(_refs("synthetic/bracket", 4)).pose == "fixed"
    assert infer_pose(_refs("synthetic/bracket-loose", 4)).pose == "free"
    assert infer_pose(_refs("synthetic/bracket", 1)).pose == "fixed"  # one image: the default


def test_few_references_must_agree_more_closely_to_be_judged_fixed() -> None:
    part = generate_sample("synthetic/bracket", None, seed=0, size=SIZE).image
    turned = [rotated(part, angle) for angle in (0.0, 8.0, 0.0, 8.0)]  # 8 degrees apart: R about 0.99
    two, four = infer_pose(turned[:2]), infer_pose(turned)
    assert 0.97 <= two.resultant < 0.995 and four.resultant >= 0.97
    assert two.pose == "free"  # two free parts agree that well by chance (a quarter of hazelnut pairs)
    assert four.pose == "fixed"  # four do not: the spread stays a fixed product's
    assert infer_pose(turned[:2], agreement=(0.97, 0.97, 0.97)).pose == "fixed"  # the old single cut-off
    assert fixed_cutoff(2) == 0.995 and fixed_cutoff(3) == 0.99 and fixed_cutoff(40) == 0.97
    assert infer_pose([part, part]).pose == "fixed"  # identical references: fixed at any count


def test_free_pose_forgives_rotation_and_still_sees_defects(expert: PatchCoreExpert) -> None:
    refs = _refs("synthetic/bracket-loose", 4)
    bank = expert.fit(refs)
    assert bank.meta["pose"].startswith("free")
    normal = [
        expert.analyse_with_bank(generate_sample("synthetic/bracket-loose", None, 900 + s, SIZE).image, bank)
        for s in range(4)
    ]
    defects = [
        expert.analyse_with_bank(generate_sample("synthetic/bracket-loose", kind, 950 + s, SIZE).image, bank)
        for s, kind in enumerate(("hole", "colour", "crack", "stain"))
    ]
    assert max(r.score for r in normal) < 0.5
    assert min(r.raw_score for r in defects) > max(r.raw_score for r in normal)
    assert sum(r.score > 0.5 for r in defects) >= 3
    assert all(r.regions for r in defects if r.score > 0.5)


def test_fixed_pose_flags_a_misplaced_part(expert: PatchCoreExpert) -> None:
    refs = _refs("synthetic/bracket", 4)
    bank = expert.fit(refs)
    assert bank.meta["pose"].startswith("fixed")
    assert (
        expert.analyse_with_bank(generate_sample("synthetic/bracket", None, 900, SIZE).image, bank).score
        < 0.5
    )
    moved = expert.analyse_with_bank(generate_sample("synthetic/bracket", "misplaced", 901, SIZE).image, bank)
    assert moved.score > 0.5 and moved.regions


def test_fixed_pose_scores_the_part_not_the_frame_edge(expert: PatchCoreExpert) -> None:
    bank = expert.fit(_refs("synthetic/bracket", 4))
    assert bank.meta["pose"].startswith("fixed")
    clean = generate_sample("synthetic/bracket", None, 900, SIZE).image
    pixels = np.asarray(clean).copy()
    pixels[:8, -8:] = (20, 200, 20)  # a green blotch in the frame's corner, inside the outer 2 cells
    cornered = expert.analyse_with_bank(Image.fromarray(pixels), bank)
    assert cornered.score < 0.5
    grid = cornered.patch_scores
    assert np.ptp(grid[:2]) == 0 and np.ptp(grid[:, -2:]) == 0  # the outer cells carry the median
    # the report can say so: 2 of the 20 cells of a 160 px input
    assert cornered.scored_area == "the image less its outer 10 % on each side"
    unmargined = PatchCoreExpert(
        ExpertConfig(features={"image_size": SIZE}, heatmap=False, fixed_margin_cells=0)
    )
    whole = unmargined.analyse_with_bank(
        Image.fromarray(pixels), unmargined.fit(_refs("synthetic/bracket", 4))
    )
    assert whole.score > 0.5 and whole.scored_area == "the whole image"
    stained = expert.analyse_with_bank(generate_sample("synthetic/bracket", "stain", 950, SIZE).image, bank)
    assert stained.score > 0.5 and stained.regions


def _corner_stain(image: Image.Image) -> Image.Image:
    """A dark stain in the top-left corner, outside the inscribed disc."""
    pixels = np.asarray(image).copy()
    ys, xs = np.mgrid[0 : pixels.shape[0], 0 : pixels.shape[1]]
    pixels[np.hypot(xs - 0.07 * SIZE, ys - 0.07 * SIZE) < 0.04 * SIZE] = (25, 20, 20)
    return Image.fromarray(pixels)


def test_a_free_pose_texture_keeps_its_corners_scored(expert: PatchCoreExpert) -> None:
    tiles = _refs("synthetic/tile", 4)
    washers = _refs("synthetic/washer", 4)
    assert corner_content(tiles) > 0.6 > 0.2 > corner_content(washers)  # a texture fills the frame
    bank = expert.fit(tiles, pose="free")
    assert bank.calibration["disc"] == 0.0
    tile = generate_sample("synthetic/tile", None, 900, SIZE).image
    assert expert.analyse_with_bank(tile, bank).score < 0.5
    stained = expert.analyse_with_bank(_corner_stain(tile), bank)
    assert stained.score > 0.5 and stained.regions
    assert stained.scored_area == "the image less its outer 10 % on each side"
    box = max(stained.regions, key=lambda region: region.score)
    assert box.x0 < 0.25 * SIZE and box.y0 < 0.25 * SIZE  # the region is the corner stain
    # the old rule (the disc for every free pose) leaves the same corner out of the score
    disc_always = PatchCoreExpert(
        ExpertConfig(features={"image_size": SIZE}, heatmap=False, disc_corner_content=100.0)
    )
    assert disc_always.analyse_with_bank(_corner_stain(tile), disc_always.fit(tiles, pose="free")).score < 0.5
    # a part on a plain background keeps the disc: its corners are background
    washer_bank = expert.fit(washers)
    assert washer_bank.calibration["disc"] == 1.0
    washer = expert.analyse_with_bank(generate_sample("synthetic/washer", None, 900, SIZE).image, washer_bank)
    assert washer.scored_area == "the disc inscribed in the image (its corners are background)"


def test_knowledge_pose_overrides_the_inference(expert: PatchCoreExpert) -> None:
    refs = _refs("synthetic/bracket", 3)
    assert expert.fit(refs, pose="free").meta["pose"] == "free (knowledge)"
    assert expert.fit(refs).meta["pose"] == "fixed (references)"
    # who declared the pose is named, and a bank cached for one source is not read back for another
    declared = expert.fit(refs, pose="free", pose_source="registered product")
    assert declared.meta["pose"] == "free (registered product)"
    assert expert.fit(refs, pose="free").meta["pose"] == "free (knowledge)"


def test_two_references_give_a_less_confident_score_than_four(expert: PatchCoreExpert) -> None:
    two, four = expert.fit(_refs("synthetic/bracket", 2)), expert.fit(_refs("synthetic/bracket", 4))
    relative = {
        n: bank.calibration["scale"] / bank.calibration["threshold"] for n, bank in ((2, two), (4, four))
    }
    assert relative[2] == pytest.approx(float(np.hypot(0.08, 0.15)))  # the 2-reference threshold's spread
    assert relative[4] == pytest.approx(0.08)
    # a raw score 15 % under the threshold: a confident "normal" from 4 references, not from 2
    below = {
        n: calibrate(
            0.85 * bank.calibration["threshold"], bank.calibration["threshold"], bank.calibration["scale"]
        )
        for n, bank in ((2, two), (4, four))
    }
    assert below[4] < 0.2 < below[2] < 0.45
    wide = PatchCoreExpert(
        ExpertConfig(features={"image_size": SIZE}, heatmap=False, few_reference_spread=())
    )
    narrow = wide.fit(_refs("synthetic/bracket", 2)).calibration
    assert narrow["scale"] / narrow["threshold"] == pytest.approx(0.08)  # () switches the widening off


@pytest.mark.parametrize("size", [(1, 1), (20, 20), (10000, 10), (31, 64)])
def test_a_query_below_the_minimum_side_is_refused(expert: PatchCoreExpert, size: tuple[int, int]) -> None:
    bank = expert.fit(_refs("synthetic/washer", 2))
    with pytest.raises(InvalidImageError, match="px minimum side"):
        expert.analyse_with_bank(Image.new("RGB", size), bank)
    with pytest.raises(InvalidImageError):  # refused before any bank is built
        expert.analyse(Image.new("RGB", size), [])


@pytest.mark.parametrize("size", [(400, 100), (100, 300)])
def test_a_query_of_another_shape_is_uncertain_with_a_note(
    expert: PatchCoreExpert, size: tuple[int, int]
) -> None:
    bank = expert.fit(_refs("synthetic/washer", 2))
    result = expert.analyse_with_bank(Image.new("RGB", size, (200, 30, 30)), bank)
    assert result.score == 0.5 and not result.regions
    assert result.notes and "aspect ratio" in result.notes[0]


def test_a_score_near_the_threshold_gets_its_strongest_place_as_a_region(expert: PatchCoreExpert) -> None:
    bank = expert.fit(_refs("synthetic/washer", 3))
    bank.calibration["pixel_threshold"] = 1e6  # no pixel passes: only the fallback can give a region
    image = generate_sample("synthetic/washer", None, 990, SIZE).image
    plain = expert.analyse_with_bank(image, bank)
    assert plain.score < 0.45 and not plain.regions
    everywhere = PatchCoreExpert(expert.config.model_copy(update={"show_peak_above": 0.0}))
    shown = everywhere.analyse_with_bank(image, bank)
    assert shown.score == plain.score and len(shown.regions) == 1


def test_an_anomalous_score_always_comes_with_a_region_that_the_heatmap_shows() -> None:
    # a pixel threshold far above every pixel: only the strongest-blob fallback can give a region
    config = ExpertConfig(features={"image_size": SIZE}, heatmap=True)
    expert = PatchCoreExpert(config)
    bank = expert.fit(_refs("synthetic/washer", 3))
    bank.calibration["pixel_threshold"] = 1e6
    flagged = 0
    for seed, kind in enumerate(("hole", "colour", "stain", "missing_piece")):
        result = expert.analyse_with_bank(
            generate_sample("synthetic/washer", kind, 700 + seed, SIZE).image, bank
        )
        if result.score > 0.5:
            flagged += 1
            assert len(result.regions) == 1
            box = result.regions[0]
            assert box.score == pytest.approx(result.score)  # the region stands for the image's score
            assert 0 <= box.x0 < box.x1 <= SIZE and 0 <= box.y0 < box.y1 <= SIZE
            # the heatmap shows it: its peak lies in the box, and the overlay is hottest there
            peak_y, peak_x = np.unravel_index(int(np.argmax(result.pixel_scores)), result.pixel_scores.shape)
            assert box.x0 <= peak_x < box.x1 and box.y0 <= peak_y < box.y1
            png = result.heatmap()
            assert png is not None
            overlay = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
            red = overlay[..., 0].astype(float) - overlay[..., 2].astype(float)
            inside = red[box.y0 : box.y1, box.x0 : box.x1].mean()
            assert inside > red.mean()
            # and little else: the map is drawn from its median up, so a faint peak does not tint
            # the whole image (it did: 6-10 % of these washers' pixels, most of a solar cell's)
            image = np.asarray(
                generate_sample("synthetic/washer", kind, 700 + seed, SIZE).image.convert("RGB")
            )
            tinted = np.abs(overlay.astype(float) - image.astype(float)).max(axis=-1) > 40
            assert tinted.mean() < 0.05
    assert flagged >= 2


def test_rotation_helper_keeps_size_and_fills_corners_with_the_border() -> None:
    image = Image.fromarray(np.full((64, 64, 3), 40, dtype=np.uint8))
    turned = rotated(image, 45)
    assert turned.size == image.size
    assert np.abs(np.asarray(turned).astype(int) - 40).max() <= 1
