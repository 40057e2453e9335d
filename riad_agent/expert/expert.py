"""The PatchCore-style few-shot vision expert: a bank of normal patches, nearest-neighbour anomaly maps.

Input policy (decided here, tested in ``tests/expert``):

- every image, query or reference, is converted to RGB and resized to ``image_size`` squared; a
  query may have any size and its maps come back at its own size;
- a grayscale (mode ``L``) or palette query is accepted and replicated to RGB (EL images, X-rays and
  line-scan cameras are grayscale);
- references may differ in pixel size, but not in shape: aspect ratios that differ by more than
  ``max_aspect_spread`` (10 %) raise :class:`ReferenceImageError` (mixed views or products);
- no references raises :class:`ReferenceImageError`; anything that is not a PIL image, an empty
  one, or a query smaller than ``min_query_side`` on either side raises :class:`InvalidImageError`;
- a query whose aspect ratio differs from the references' by more than ``max_query_aspect_spread``
  is not judged: score 0.5 (verdict ``uncertain``), no regions, and the reason in
  ``AnomalyMap.notes``;
- an image over (or within the uncertain band under) its threshold always has at least one region
  (the strongest blob when no pixel passes the pixel threshold): the place to look.

Pose (see :mod:`riad_agent.expert.pose`): a product's normal pose is ``fixed`` (a turned or shifted
part is a defect) or ``free``; the knowledge entry says which, or it is inferred from the
references' orientation spread (one reference: ``single_reference_pose``, free by default). Free:
the bank holds each reference turned ``rotations`` times (fewer when there are many references),
no position features, and only the inscribed disc is scored. Fixed: position features, whole-cell
alignment, a few jittered copies of each reference (``fixed_views``), and the outermost
``fixed_margin_cells`` of the grid are not scored (the frame's edge, not the part).

Calibration with few references (``calibration="relative"``): the image score is the peak patch
distance; 2+ references: threshold = ``relative_factor`` x the median leave-one-out score; one
reference: a fixed raw threshold learned once for the default features (``single_threshold``).
The logistic scale is ``relative_scale`` x the threshold, widened for 2-3 references
(``few_reference_spread``): a threshold read from two comparisons is itself uncertain, and a score
near it must not read as a confident answer.
The constants (``relative_factor``, ``single_threshold``, ...) were chosen on generated products and
MVTec train splits only; the measurements are in ``docs/results.md``.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from riad_agent.backbones import images_to_batch, load_backbone
from riad_agent.errors import InvalidImageError, ReferenceImageError
from riad_agent.expert.alignment import best_shift, cell_steps, shift_positions
from riad_agent.expert.bank import (
    BankCache,
    MemoryBank,
    greedy_coreset,
    image_digest,
    in_content_order,
    key_of,
    nearest_distances,
)
from riad_agent.expert.calibration import Calibration, fit_calibration, relative_calibration
from riad_agent.expert.describe import describe_regions
from riad_agent.expert.features import FeatureConfig, PatchFeatureExtractor
from riad_agent.expert.pose import (
    FIXED_AGREEMENT,
    Pose,
    PoseEstimate,
    border_fill,
    corner_content,
    infer_pose,
    rotated,
)
from riad_agent.expert.regions import (
    find_regions,
    guided_upsample,
    heatmap_overlay,
    strongest_region,
    upsample_map,
)
from riad_agent.protocols import AnomalyMap
from riad_agent.schemas import RegionDescription

#: A share between 0 and 1 (a resultant length).
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class ExpertConfig(BaseModel):
    """Every knob of the expert; all of it except the cache folder is part of the bank cache key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: str = "efficientnet-lite0"
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    coreset_above: int = Field(
        default=8192, ge=1, description="Subsample banks with at least this many patches."
    )
    coreset_ratio: float = Field(default=0.1, gt=0, le=1, description="Fraction kept by the coreset.")
    coreset_min: int = Field(default=4096, ge=1, description="Never subsample below this many patches.")
    top_k: int = Field(default=1, ge=1, description="Image score = mean of the top-k patch scores.")
    grid_sigma: float = Field(default=0.0, ge=0, description="Smoothing of the patch grid (cells).")
    pixel_sigma: float = Field(
        default=8.0,
        ge=0,
        description=(
            "Gaussian smoothing (pixels) of the upsampled grid: the pixel map when guide_radius is 0, "
            "and always the reasoner's prior (AnomalyMap.prior_scores)."
        ),
    )
    guide_radius: int = Field(
        default=8,
        ge=0,
        description=(
            "Window radius (network-input pixels) of the colour guided filter that upsamples the patch "
            "grid along the image's edges; 0 = bilinear upsampling + Gaussian pixel_sigma."
        ),
    )
    guide_eps: float = Field(default=1e-3, gt=0, description="Guided-filter regularisation.")
    guide_subsample: int = Field(
        default=4, ge=1, description="Guided-filter coefficients fitted this much smaller."
    )
    align_reach: int = Field(
        default=1,
        ge=0,
        description=(
            "Register each query to the references by shifting its position features by whole grid "
            "cells, up to this many, keeping the shift with the lowest mean patch distance (only "
            "with position features); 0 = off. See riad_agent.expert.alignment."
        ),
    )
    loo_max_references: int = Field(default=16, ge=2, description="References scored leave-one-out.")
    calibration: Literal["relative", "max-z"] = Field(
        default="relative",
        description=(
            "'relative': threshold = factor x the median held-out normal score (factors chosen once on "
            "generated products and train splits, see docs/results.md); 'max-z': max(mean + z std, max)."
        ),
    )
    relative_factor: float = Field(
        default=1.15, gt=0, description="2+ references: threshold / median leave-one-out image score."
    )
    single_threshold: float | None = Field(
        default=6.5,
        gt=0,
        description=(
            "1 reference: a fixed raw threshold, learned once on generated products and MVTec train "
            "splits for the default features (efficientnet-lite0 s4s8s16s32, 256 px); with other "
            "features, or None, single_factor x the median augmented-view score is used instead."
        ),
    )
    single_factor: float = Field(default=1.45, gt=0, description="Threshold / median view score, 1 ref.")
    relative_scale: float = Field(default=0.08, gt=0, description="Logistic scale / threshold.")
    few_reference_spread: tuple[float, ...] = Field(
        default=(0.15, 0.04),
        description=(
            "2, 3, ... references: how much less certain their leave-one-out threshold is than a "
            "4-reference one (relative; the extra root-mean-square log error of the threshold, measured "
            "on generated products and train splits, see docs/results.md). The logistic scale becomes "
            "hypot(relative_scale, spread) x threshold, so a score from 2 references is less confident."
        ),
    )
    calibration_z: float = Field(default=2.0, ge=0)
    single_reference_margin: float = Field(default=1.25, ge=1.0)
    pose: Literal["auto", "free", "fixed"] = Field(
        default="auto",
        description=(
            "'fixed' (a turned or shifted part is a defect), 'free' (parts lie at any rotation: the "
            "bank holds rotated references, no position features) or 'auto' (inferred from the "
            "references, see riad_agent.expert.pose); a knowledge entry's pose overrides 'auto'."
        ),
    )
    fixed_agreement: tuple[Unit, Unit, Unit] = Field(
        default=FIXED_AGREEMENT,
        description=(
            "Orientation agreement (resultant length) that 2, 3, and 4 or more references need for an "
            "inferred fixed pose: stricter for few references, which agree by chance (expert/pose.py)."
        ),
    )
    rotations: int = Field(default=8, ge=1, description="Most rotated copies of a reference (free pose).")
    single_reference_pose: Literal["free", "fixed"] = Field(
        default="free",
        description=(
            "Pose assumed with one reference and no knowledge (no spread to infer from): a free "
            "product judged as fixed flags every turned normal part; a fixed one judged as free only "
            "misses 'misplaced'."
        ),
    )
    fixed_views: int = Field(
        default=3,
        ge=0,
        le=6,
        description=(
            "Fixed pose: jittered copies (the first steps of JITTER_PLAN: a few px shift, up to 2 degrees) "
            "of each reference added to the bank while the bank stays under rotation_images images; 0 = off."
        ),
    )
    free_disc: bool = Field(
        default=True,
        description="Free pose: score only the inscribed disc (what a turn keeps in view; corners are fill) "
        "when the references' corners are background (see disc_corner_content).",
    )
    disc_corner_content: float = Field(
        default=0.3,
        ge=0,
        description=(
            "Free pose: the disc applies only when the references' corners hold less than this "
            "(pose.corner_content: 0.04-0.16 for parts on a plain background, 0.4-0.5 for a transistor on "
            "its board, 0.6-1.1 for textures and solar cells); otherwise the whole frame is scored less "
            "its outer fixed_margin_cells (benchmarks/few_shot/corner_probe.py)."
        ),
    )
    fixed_margin_cells: int = Field(
        default=2,
        ge=0,
        description=(
            "Fixed pose with position features, and a free pose scored without the disc: the outermost "
            "cells of the patch grid are not scored (the alignment shifts them out of view and the "
            "frame's edge varies most between normal parts; chosen on MVTec train splits and generated "
            "parts: benchmarks/few_shot/structural_probe.py and corner_probe.py)."
        ),
    )
    rotation_images: int = Field(
        default=32, ge=1, description="Free pose: rotate references until the bank holds ~this many images."
    )
    min_query_side: int = Field(
        default=32, ge=1, description="Queries with a shorter side are refused (InvalidImageError)."
    )
    max_query_aspect_spread: float = Field(
        default=0.25, ge=0, description="Queries whose aspect differs more from the references': uncertain."
    )
    reference_disagreement: float = Field(
        default=2.5,
        gt=1,
        description=(
            "3+ references: one whose leave-one-out peak score is this many times the others' median "
            "has a place unlike them (a defect?); a verdict that is not anomalous then becomes uncertain."
        ),
    )
    reference_typicality: float = Field(
        default=1.8,
        gt=1,
        description=(
            "3+ references: one whose leave-one-out mean patch distance is this many times the others' "
            "median looks unlike them overall (another product?); not-anomalous verdicts become uncertain."
        ),
    )
    auto_position: bool = Field(
        default=True,
        description=(
            "Drop the position features when the references are not spatially aligned (textures): "
            "see reference_alignment()."
        ),
    )
    alignment_threshold: float = Field(default=0.6, gt=0)
    max_aspect_spread: float = Field(default=0.10, ge=0)
    min_region_area: int = Field(default=16, ge=1)
    max_region_share: float = Field(
        default=0.06,
        gt=0,
        le=1,
        description="A region wider than this share of the image is cut again at half-way to its peak "
        "(chosen on generated products: benchmarks/region_boxes.py).",
    )
    show_peak_above: float = Field(
        default=0.45,
        ge=0,
        le=0.5,
        description=(
            "From this calibrated image score up (0.45: the lower edge of the uncertain band), an image "
            "whose pixels all stay under the pixel threshold still gets its strongest place as a region "
            "and on the heatmap, so an anomalous or uncertain verdict always says where to look."
        ),
    )
    memory_banks: int = Field(default=8, ge=0, description="Banks kept in memory (LRU).")
    heatmap: bool = True

    def key(self) -> str:
        """Stable hash of every setting that changes the bank or its calibration."""
        payload = self.model_dump(
            exclude={"memory_banks", "heatmap", "min_region_area", "max_region_share", "show_peak_above"}
        )
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _check_image(image: object, what: str) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise InvalidImageError(f"the {what} must be a PIL image, got {type(image).__name__}")
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImageError(f"the {what} is empty ({width}x{height})")
    return image if image.mode == "RGB" else image.convert("RGB")


class PatchCoreExpert:
    """Few-shot anomaly maps against normal references (implements :class:`riad_agent.protocols.Expert`)."""

    def __init__(
        self,
        config: ExpertConfig | None = None,
        cache_dir: str | Path | None = None,
        cache_max_bytes: int | None = None,
    ) -> None:
        self.config = config or ExpertConfig()
        backbone = load_backbone(self.config.backbone)
        self.backbone_id = backbone.backbone_id
        self.extractor = PatchFeatureExtractor(backbone, self.config.features)
        self.cache = BankCache(Path(cache_dir), cache_max_bytes) if cache_dir is not None else None
        self.stats = {"bank_builds": 0, "disk_hits": 0, "memory_hits": 0}
        self._memory: OrderedDict[str, MemoryBank] = OrderedDict()
        self._lock = threading.Lock()

    # ---- references -> bank ------------------------------------------------------------------------

    def _check_references(self, references: Sequence[Image.Image]) -> list[Image.Image]:
        if isinstance(references, Image.Image) or not isinstance(references, Sequence):
            raise ReferenceImageError("references must be a list of normal images of the category")
        if len(references) == 0:
            raise ReferenceImageError(
                "no reference images: give at least one normal image of the same category"
            )
        checked = []
        for index, reference in enumerate(references):
            if not isinstance(reference, Image.Image):
                raise ReferenceImageError(
                    f"reference {index} must be a PIL image, got {type(reference).__name__}"
                )
            width, height = reference.size
            if width < 1 or height < 1:
                raise ReferenceImageError(f"reference {index} is empty ({width}x{height})")
            checked.append(reference if reference.mode == "RGB" else reference.convert("RGB"))
        aspects = [image.size[0] / image.size[1] for image in checked]
        if max(aspects) / min(aspects) - 1 > self.config.max_aspect_spread:
            sizes = sorted({f"{image.size[0]}x{image.size[1]}" for image in checked})
            raise ReferenceImageError(
                "reference images have different shapes (" + ", ".join(sizes[:6]) + "); "
                "use views of the same product with the same aspect ratio"
            )
        return checked

    def fit(
        self, references: Sequence[Image.Image], *, pose: Pose | None = None, pose_source: str = "knowledge"
    ) -> MemoryBank:
        """The calibrated memory bank of these references (from memory, the disk cache, or built).

        ``pose`` ("free" / "fixed", e.g. from the product's knowledge entry) overrides the config's
        ``pose`` when that is "auto"; ``pose_source`` names who declared it in the bank's pose label.
        """
        checked = self._check_references(references)
        if pose is not None and pose not in ("free", "fixed"):
            raise ReferenceImageError(f"pose must be 'free' or 'fixed', got {pose!r}")
        # built in content order: the same references give the same bank (jitter seeds, coreset)
        # whatever order they come in, as the key already said; "reference N" in its cautions is
        # renumbered in the caller's order by analyse()
        images, fingerprint = in_content_order(checked)
        declared = f"{pose}@{pose_source}" if pose is not None else "None"
        key = key_of(fingerprint, self.backbone_id, self.config.key() + f"|pose={declared}|content-order")
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                self.stats["memory_hits"] += 1
                return self._memory[key]
            bank = self.cache.load(key) if self.cache is not None else None
            if bank is not None:
                self.stats["disk_hits"] += 1
            else:
                bank = self._build(images, pose, pose_source)
                self.stats["bank_builds"] += 1
                if self.cache is not None:
                    self.cache.save(key, bank)
            self._remember(key, bank)
            return bank

    def _remember(self, key: str, bank: MemoryBank) -> None:
        if self.config.memory_banks == 0:
            return
        self._memory[key] = bank
        while len(self._memory) > self.config.memory_banks:
            self._memory.popitem(last=False)

    def resolve_pose(
        self, images: Sequence[Image.Image], pose: Pose | None = None, pose_source: str = "knowledge"
    ) -> PoseEstimate:
        """The pose a bank of these references uses: config, then the declared ``pose`` (from
        ``pose_source``), then inferred."""
        if self.config.pose in ("free", "fixed"):
            return PoseEstimate(self.config.pose, "configuration")
        if pose in ("free", "fixed"):
            return PoseEstimate(pose, pose_source)
        if len(images) < 2:
            return PoseEstimate(self.config.single_reference_pose, "default for 1 reference")
        return infer_pose(images, agreement=self.config.fixed_agreement)

    def _build(
        self, images: list[Image.Image], pose_hint: Pose | None = None, pose_source: str = "knowledge"
    ) -> MemoryBank:
        torch.manual_seed(self.config.features.seed)
        pose = self.resolve_pose(images, pose_hint, pose_source)
        free = pose.pose == "free"
        n_rot = max(1, min(self.config.rotations, self.config.rotation_images // len(images))) if free else 1
        if free:
            angles = [360.0 * k / n_rot for k in range(n_rot)]
            views = [rotated(image, angle) for image in images for angle in angles]
        else:
            n_rot = 1 + max(0, min(self.config.fixed_views, self.config.rotation_images // len(images) - 1))
            size = self.config.features.image_size
            views = []
            for image in images:
                views.append(image)
                if n_rot > 1:
                    views += _jittered_views(image, size, n_rot - 1)
        grids = self.extractor(views)  # (B * n_rot, rows, cols, D); reference i itself at row i * n_rot
        position = 1.0
        check = self.config.features.position_weight > 0 and self.config.auto_position and len(images) >= 2
        if free or (check and reference_alignment(images) > self.config.alignment_threshold):
            position = 0.0
        grids = _scale_position(grids, position, self.config.features.position_weight)
        _, rows, cols, dim = grids.shape
        features = grids.reshape(-1, dim)
        owners = torch.arange(len(images)).repeat_interleave(n_rot * rows * cols)
        if features.shape[0] >= self.config.coreset_above:
            target = max(self.config.coreset_min, int(self.config.coreset_ratio * features.shape[0]))
            keep = greedy_coreset(features, target, seed=self.config.features.seed)
            features, owners = features[keep].contiguous(), owners[keep].contiguous()
        bank = MemoryBank(
            features=features,
            owners=owners,
            n_references=len(images),
            grid=(rows, cols),
            backbone_id=self.backbone_id,
            config_key=self.config.key(),
        )
        rotations = float(n_rot if free else 1)
        disc = free and self.config.free_disc and corner_content(images) < self.config.disc_corner_content
        bank.calibration = {
            "position": position,
            "rotations": rotations,
            "free": float(free),
            "disc": float(disc),
        }
        image_cal, pixel_cal, level, held_out = self._calibrate(bank, grids[::n_rot], images, free)
        outlier, ratio = _outlier({index: peak for index, (peak, _) in held_out.items()})
        typical_outlier, typical_ratio = _outlier({index: mean for index, (_, mean) in held_out.items()})
        bank.calibration.update(
            {
                "threshold": image_cal.threshold,
                "scale": image_cal.scale,
                "pixel_threshold": pixel_cal.threshold,
                "pixel_scale": pixel_cal.scale,
                "n_samples": float(image_cal.n_samples),
                "level": level,
                "views_per_reference": float(n_rot),
                "aspect": float(np.median([image.size[0] / image.size[1] for image in images])),
                "outlier_reference": float(outlier),
                "outlier_ratio": ratio,
                "typical_outlier_reference": float(typical_outlier),
                "typical_outlier_ratio": typical_ratio,
            }
        )
        bank.meta = {
            "calibration": image_cal.method,
            "threshold_rule": (
                "fixed-scale"
                if self.config.calibration == "relative"
                and len(images) == 1
                and self.config.single_threshold is not None
                and self._default_features()
                else self.config.calibration
            ),
            "pose": f"{pose.pose} ({pose.source})",
            "pose_spread_degrees": f"{pose.spread_degrees:.0f}",
            "reference_order": " ".join(image_digest(image)[:16] for image in images),
        }
        return bank

    def _calibrate(
        self, bank: MemoryBank, grids: torch.Tensor, images: list[Image.Image], free: bool = False
    ) -> tuple[Calibration, Calibration, float, dict[int, tuple[float, float]]]:
        """(image, pixel) calibrations, the median held-out score, and each reference's leave-one-out
        (image score, mean patch distance)."""
        image_scores: list[float] = []
        held_out: dict[int, tuple[float, float]] = {}
        pixel_peaks: list[float] = []
        if bank.n_references >= 2:
            generator = np.random.default_rng(self.config.features.seed)
            order = generator.permutation(bank.n_references)[: self.config.loo_max_references]
            indices = sorted(int(i) for i in order)
            for index, guide in zip(indices, self._guides([images[i] for i in indices]), strict=True):
                grid = self._aligned_distances(grids[index], bank, exclude_owner=index)
                image_raw, pixel_map = self._scores(grid, guide)
                image_scores.append(image_raw)
                pixel_peaks.append(float(pixel_map.max()))
                held_out[index] = (image_raw, float(np.mean(grid)))
            method, margin = "leave-one-out", 1.0
        else:
            views = _augmented_views(images[0], self.config.features.image_size, self.config.features.seed)
            if free:  # turned between the bank's rotated copies, so the views are not already in it
                step = 360.0 / max(1, int(bank.calibration.get("rotations", self.config.rotations)))
                views = [rotated(view, step * (k + 0.5)) for k, view in enumerate(views)]
            view_grids = _scale_position(
                self.extractor(views),
                bank.calibration.get("position", 1.0),
                self.config.features.position_weight,
            )
            for grid_features, guide in zip(view_grids, self._guides(views), strict=True):
                image_raw, pixel_map = self._scores(self._aligned_distances(grid_features, bank), guide)
                image_scores.append(image_raw)
                pixel_peaks.append(float(pixel_map.max()))
            method, margin = "augmented-views", self.config.single_reference_margin
        level = float(np.median(image_scores))
        if self.config.calibration == "relative":
            if method == "leave-one-out":
                threshold = self.config.relative_factor * level
            elif self.config.single_threshold is not None and self._default_features():
                threshold = self.config.single_threshold
            else:
                threshold = self.config.single_factor * level
            scale = self.config.relative_scale
            spread = self.config.few_reference_spread
            if method == "leave-one-out" and bank.n_references - 2 < len(spread):
                scale = math.hypot(scale, spread[bank.n_references - 2])
            image_cal, pixel_cal = relative_calibration(threshold, image_scores, pixel_peaks, method, scale)
            return image_cal, pixel_cal, level, held_out
        z = self.config.calibration_z
        return (
            fit_calibration(image_scores, method, z=z, margin=margin),
            fit_calibration(pixel_peaks, method, z=z, margin=margin),
            level,
            held_out,
        )

    def _default_features(self) -> bool:
        """True when the raw distance scale is the one single_threshold was learned on."""
        features = self.config.features
        return (
            self.backbone_id == "efficientnet-lite0/s4s8s16s32"
            and features.image_size == 256
            and features.grid_stride == 8
            and features.neighbourhood == 3
            and features.projection_dim is None
            and not features.normalise_intensity
        )

    def _guides(self, images: Sequence[Image.Image]) -> list[torch.Tensor | None]:
        """The images' network inputs as guided-filter guides (Nones when the filter is off)."""
        if self.config.guide_radius <= 0:
            return [None] * len(images)
        features = self.config.features
        return list(images_to_batch(images, features.image_size, features.normalise_intensity))

    # ---- query -> map ------------------------------------------------------------------------------

    def _aligned_distances(
        self, grid_features: torch.Tensor, bank: MemoryBank, exclude_owner: int | None = None
    ) -> np.ndarray:
        """Nearest-bank distance grid of one (rows, cols, D) feature grid, registered to the bank's pose.

        With position features on and ``align_reach > 0`` the query's position columns are first
        moved by the whole-cell offset that best matches the bank (see ``alignment.best_shift``).
        ``exclude_owner`` leaves that reference's patches out (leave-one-out calibration).
        """
        skip = None if exclude_owner is None else bank.owners == exclude_owner
        weight = self.config.features.position_weight * bank.calibration.get("position", 1.0)
        if weight > 0 and self.config.align_reach > 0:
            steps = cell_steps(bank.grid, weight)
            shift = best_shift(grid_features, bank.features, steps, self.config.align_reach, skip=skip)
            if shift != (0.0, 0.0):
                grid_features = shift_positions(grid_features, shift)
        flat = grid_features.reshape(-1, grid_features.shape[-1])
        exclude = None if exclude_owner is None else bank.owners
        inside, _ = self._scored_cells(bank)
        if inside is None:
            distances = nearest_distances(flat, bank.features, exclude=exclude, exclude_owner=exclude_owner)
            return distances.reshape(bank.grid).numpy()
        # only the scored cells are searched; the others carry the scored cells' median
        scored = nearest_distances(
            flat[torch.from_numpy(inside.ravel())],
            bank.features,
            exclude=exclude,
            exclude_owner=exclude_owner,
        ).numpy()
        grid = np.full(bank.grid, np.median(scored), dtype=scored.dtype)
        grid[inside] = scored
        return grid

    def _scored_cells(self, bank: MemoryBank) -> tuple[np.ndarray | None, str]:
        """The grid cells that count (None = all) and, in words, the part of the image they cover.

        A free pose on a plain background: the inscribed disc (the corners hold background, which
        turns with the part); a free pose filling the frame or a fixed pose with position features:
        all but the outer ``fixed_margin_cells`` (the frame's edge, where padding and alignment shift
        cells out of view); otherwise every cell.
        """
        free = bank.calibration.get("free", 0.0) > 0
        weight = self.config.features.position_weight * bank.calibration.get("position", 1.0)
        if bank.calibration.get("disc", float(free and self.config.free_disc)) > 0:
            return _disc(bank.grid), "the disc inscribed in the image (its corners are background)"
        margin = self.config.fixed_margin_cells
        if (weight > 0 or free) and margin > 0 and min(bank.grid) > 2 * margin:
            share = 100.0 * margin / min(bank.grid)
            return _inner(bank.grid, margin), f"the image less its outer {share:.0f} % on each side"
        return None, "the whole image"

    def _scores(self, grid: np.ndarray, guide: torch.Tensor | None = None) -> tuple[float, np.ndarray]:
        """(image raw score, pixel map at network input size) from a raw patch-distance grid.

        ``guide`` is the (3, S, S) network input of the same image; with it and ``guide_radius > 0``
        the grid is upsampled by the guided filter, otherwise bilinearly + Gaussian ``pixel_sigma``.
        """
        from scipy import ndimage

        smooth = (
            ndimage.gaussian_filter(grid, self.config.grid_sigma, mode="nearest")
            if (self.config.grid_sigma > 0)
            else grid
        )
        k = min(self.config.top_k, smooth.size)
        image_raw = float(np.sort(smooth.ravel())[-k:].mean())
        size = self.config.features.image_size
        if guide is not None and self.config.guide_radius > 0:
            pixel_map = guided_upsample(
                grid, guide, self.config.guide_radius, self.config.guide_eps, self.config.guide_subsample
            )
        else:
            pixel_map = upsample_map(grid, size, size, self.config.pixel_sigma)
        return image_raw, pixel_map

    def _batch_distances(self, batch: torch.Tensor, bank: MemoryBank) -> np.ndarray:
        features = self.extractor.from_batch(batch)
        scale = bank.calibration.get("position", 1.0)
        features = _scale_position(features, scale, self.config.features.position_weight)[0]
        return self._aligned_distances(features, bank)

    def analyse(
        self,
        image: Image.Image,
        references: Sequence[Image.Image],
        *,
        pose: Pose | None = None,
        pose_source: str = "knowledge",
    ) -> AnomalyMap:
        """Score ``image`` against the references; maps come back at the image's own size.

        ``AnomalyMap.threshold`` is the raw image-score threshold (raw == threshold <=> score 0.5).
        ``pose`` is the product's known pose ("free" / "fixed"), if any, and ``pose_source`` who
        declared it ("knowledge", "registered product"), named in the map's pose label.
        """
        query = self._check_query(image)
        bank = self.fit(references, pose=pose, pose_source=pose_source)
        found = self.analyse_with_bank(query, bank)
        if found.cautions:
            found.cautions = self.reference_cautions(bank, self._check_references(references))
        return found

    def _check_query(self, image: object) -> Image.Image:
        query = _check_image(image, "image")
        width, height = query.size
        if min(width, height) < self.config.min_query_side:
            raise InvalidImageError(
                f"the image is {width}x{height} px, below the {self.config.min_query_side} px minimum side"
            )
        return query

    def unfit_reasons(self, image: Image.Image, bank: MemoryBank) -> list[str]:
        """Why the references cannot judge this query (a different shape); [] when they can."""
        width, height = image.size
        aspect = bank.calibration.get("aspect")
        if not aspect:
            return []
        spread = max(width / height, aspect) / min(width / height, aspect) - 1
        if spread <= self.config.max_query_aspect_spread:
            return []
        return [f"the image's aspect ratio {width / height:.2f} does not fit the references' {aspect:.2f}"]

    def reference_cautions(self, bank: MemoryBank, given: Sequence[Image.Image] | None = None) -> list[str]:
        """Why a normal verdict against this bank cannot be trusted (references that disagree); [] if none.

        A reference is numbered in the order of ``given`` (the caller's references) when it is one of
        them, else in the bank's own (content) order."""
        cal, count = bank.calibration, bank.n_references
        built = bank.meta.get("reference_order", "").split()
        order = [image_digest(image)[:16] for image in given] if given else []

        def numbered(index: int) -> int:
            if 0 <= index < len(built) and built[index] in order:
                return order.index(built[index]) + 1
            return index + 1

        typical = cal.get("typical_outlier_ratio", 0.0)
        if typical >= self.config.reference_typicality:
            number = numbered(int(cal.get("typical_outlier_reference", -1)))
            return [
                f"reference {number} of {count} looks unlike the others overall (its patches are on average "
                f"{typical:.1f}x further from theirs than theirs are from each other): is it the same product?"
            ]
        peak = cal.get("outlier_ratio", 0.0)
        if peak >= self.config.reference_disagreement:
            number = numbered(int(cal.get("outlier_reference", -1)))
            return [
                f"reference {number} of {count} has a place unlike the others (its strongest deviation is "
                f"{peak:.1f}x theirs): check that it is a good part"
            ]
        return []

    def analyse_with_bank(self, image: Image.Image, bank: MemoryBank) -> AnomalyMap:
        """Score an image against an already fitted bank.

        A query smaller than ``min_query_side`` raises :class:`InvalidImageError`; one the references
        cannot judge (see :meth:`unfit_reasons`) gets score 0.5 (the verdict ``uncertain``), no regions,
        and the reasons in ``AnomalyMap.notes``. A score over ``show_peak_above`` (0.45) always comes with a region.
        """
        query = self._check_query(image)
        notes = self.unfit_reasons(query, bank)
        features_config = self.config.features
        batch = images_to_batch([query], features_config.image_size, features_config.normalise_intensity)
        grid = self._batch_distances(batch, bank)
        image_raw, pixel_map = self._scores(grid, batch[0])
        prior_scores = (
            None  # the reasoner's prior: the grid smoothed, not edge-following (AnomalyMap.prior_map)
        )
        if self.config.guide_radius > 0:
            size = features_config.image_size
            prior_scores = upsample_map(grid, size, size, self.config.pixel_sigma)
        width, height = query.size
        if (width, height) != pixel_map.shape[::-1]:
            pixel_map = np.asarray(
                Image.fromarray(pixel_map, mode="F").resize((width, height), Image.Resampling.BILINEAR),
                dtype=np.float32,
            )
        cal = bank.calibration
        image_cal = Calibration(cal["threshold"], cal["scale"], bank.meta.get("calibration", ""), 0)
        pixel_cal = Calibration(cal["pixel_threshold"], cal["pixel_scale"], image_cal.method, 0)
        regions = find_regions(
            pixel_map,
            pixel_cal.threshold,
            pixel_cal,
            self.config.min_region_area,
            max_share=self.config.max_region_share,
        )
        score = float(image_cal(image_raw))
        if notes:
            score, regions = 0.5, []
        elif score > self.config.show_peak_above and not regions:
            # over (or near) the image threshold: show where, even when no pixel passes the pixel one;
            # the region stands for the image's score (its smoothed pixel peak reads lower, which
            # put "anomalous 0.89" beside a region scored 0.30 in a triage of solar cells)
            found = strongest_region(pixel_map, pixel_cal)
            regions = [found.model_copy(update={"score": max(found.score, score)})]
        render = None
        if self.config.heatmap:

            def render() -> bytes:
                heat = pixel_cal.array(pixel_map)
                peak, median = float(pixel_map.max()), float(np.median(pixel_map))
                if score > self.config.show_peak_above and float(heat.max()) < score and peak > median:
                    # over (or near) the image threshold with no pixel over the pixel one: the map
                    # still shows where, its peak drawn at the image's score and its median part at
                    # zero (scaled from zero, a faint peak tinted the whole image)
                    stretched = np.clip((pixel_map - median) / (peak - median), 0.0, 1.0)
                    heat = np.maximum(heat, score * stretched)
                return heatmap_overlay(query, heat)

        def render_description() -> RegionDescription | None:
            return (
                describe_regions(query, pixel_map, regions, threshold=pixel_cal.threshold)
                if regions
                else None
            )

        return AnomalyMap(
            patch_scores=grid.astype(np.float32),
            pixel_scores=pixel_map.astype(np.float32),
            score=score,
            raw_score=image_raw,
            threshold=image_cal.threshold,
            regions=regions,
            backbone=self.backbone_id,
            prior_scores=prior_scores,
            render_heatmap=render,
            pose=bank.meta.get("pose"),
            references=bank.n_references,
            scored_area=self._scored_cells(bank)[1],
            notes=notes,
            cautions=self.reference_cautions(bank),
            render_description=render_description,
        )


def reference_alignment(images: Sequence[Image.Image], side: int = 64) -> float:
    """How differently the references look pixel by pixel, relative to their own spatial contrast.

    Per-pixel standard deviation across the (grayscale, 64 px, slightly blurred) references,
    divided by the mean spatial standard deviation of each reference. Aligned objects (a part at a
    fixed pose) give small values; textures with a random phase and cells with varying brightness
    give large ones. Above ``alignment_threshold`` the position features are dropped because a
    patch may legitimately appear anywhere.
    """
    from scipy import ndimage

    stack = np.stack(
        [
            ndimage.gaussian_filter(
                np.asarray(
                    image.convert("L").resize((side, side), Image.Resampling.BILINEAR), dtype=np.float64
                ),
                1.0,
            )
            for image in images
        ]
    )
    spatial = float(stack.std(axis=(1, 2)).mean())
    return float(stack.std(axis=0).mean() / (spatial + 1e-9))


def _outlier(held_out: dict[int, float]) -> tuple[int, float]:
    """(index, ratio) of the reference whose held-out score is furthest above the others' median.

    Needs 3+ references (with two, each is scored against the other and the scores are alike);
    (-1, 0.0) otherwise.
    """
    if len(held_out) < 3:
        return -1, 0.0
    indices = list(held_out)
    scores = np.array([held_out[i] for i in indices])
    ratios = [
        float(scores[k] / max(float(np.median(np.delete(scores, k))), 1e-9)) for k in range(len(indices))
    ]
    worst = int(np.argmax(ratios))
    return indices[worst], ratios[worst]


def _disc(grid: tuple[int, int]) -> np.ndarray:
    """Cells of a (rows, cols) grid whose centre lies inside the inscribed disc (less half a cell)."""
    rows, cols = grid
    ys = (np.arange(rows) + 0.5) / rows - 0.5
    xs = (np.arange(cols) + 0.5) / cols - 0.5
    radius = 0.5 - 0.5 / max(rows, cols)
    return np.hypot(ys[:, None], xs[None, :]) <= radius


def _inner(grid: tuple[int, int], margin: int) -> np.ndarray:
    """Cells of a (rows, cols) grid at least ``margin`` cells from its edge (all of it if too small)."""
    rows, cols = grid
    inside = np.zeros(grid, dtype=bool)
    if rows > 2 * margin and cols > 2 * margin:
        inside[margin : rows - margin, margin : cols - margin] = True
    else:
        inside[:] = True
    return inside


def _scale_position(features: torch.Tensor, scale: float, weight: float) -> torch.Tensor:
    """Scale the two trailing position columns (present when ``weight > 0``) by ``scale``."""
    if weight <= 0 or scale == 1.0:
        return features
    features = features.clone()
    features[..., -2:] *= scale
    return features


#: The pose jitter of a fixtured part's copies, in order: (turn in degrees, x and y shift as multiples of
#: the shift amplitude). A fixed plan, not a random draw: a seeded draw moved a part's score by up to 0.2
#: from seed to seed, and this plan did better on the tuning sets (docs/results.md, "fixed jitter").
JITTER_PLAN: tuple[tuple[float, float, float], ...] = (
    (2.0, 1.0, 1.0),
    (-2.0, -1.0, -1.0),
    (0.0, 1.0, -1.0),
    (0.0, -1.0, 1.0),
    (1.0, 0.0, 1.0),
    (-1.0, 0.0, -1.0),
)


def _jittered_views(image: Image.Image, size: int, count: int, shift: float = 0.012) -> list[Image.Image]:
    """Normal pose jitter of a fixtured part: the first ``count`` steps of :data:`JITTER_PLAN`, turns of
    up to 2 degrees and shifts of ``shift`` x the side (a few pixels) in x and y (wider shifts measured:
    docs/results.md, "wider jitter")."""
    base = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    fill = border_fill(base)
    step = shift * size
    # PIL shifts by sub-pixel amounts; its type stub asks for ints
    return [
        base.rotate(angle, Image.Resampling.BICUBIC, translate=(dx * step, dy * step), fillcolor=fill)  # type: ignore[arg-type]
        for angle, dx, dy in JITTER_PLAN[:count]
    ]


def _augmented_views(image: Image.Image, size: int, seed: int, count: int = 6) -> list[Image.Image]:
    """Plausible normal variations of one reference: small shifts with a slight zoom, brightness jitter.

    The reference is resized a little larger than the network input and cropped at random offsets,
    so no artificial borders appear (a rotation would fill corners and inflate the threshold).
    """
    rng = np.random.default_rng(seed)
    margin = max(2, size // 32)
    base = image.convert("RGB").resize((size + 2 * margin, size + 2 * margin), Image.Resampling.BICUBIC)
    views = []
    for _ in range(count):
        dx, dy = (int(v) for v in rng.integers(0, 2 * margin + 1, size=2))
        view = base.crop((dx, dy, dx + size, dy + size))
        gain = float(rng.uniform(0.96, 1.04))
        array = np.clip(np.asarray(view, dtype=np.float32) * gain, 0, 255).astype(np.uint8)
        views.append(Image.fromarray(array, mode="RGB"))
    return views
