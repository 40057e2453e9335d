"""Training images and their prepared form: the expert's evidence and the frozen vision tower's cells."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from riad_agent.expert.expert import ExpertConfig, PatchCoreExpert
from riad_agent.expert.features import FeatureConfig
from riad_agent.models.builtin.vision import VisionTower
from riad_agent.question_sets.sources import LabelledSet, SourceImage, elpv_set, mvtec_set, synthetic_set
from riad_agent.training.config import Log, TrainConfig


@dataclass
class Example:
    """One training image, ready: its cells (appearance + evidence), the expert's score, its labels."""

    source: SourceImage
    cells: torch.Tensor  # grid*grid x cell_dim
    score: float  # the expert's calibrated image score


def training_images(config: TrainConfig) -> LabelledSet:
    """The train splits only: synthetic parts, ELPV cells and, with ``mvtec_root``, MVTec normals."""
    data = synthetic_set(config.synthetic_per_category, seed=config.seed)
    if config.elpv_per_class != 0:
        data.extend(elpv_set("train", config.elpv_per_class, seed=config.seed))
    if config.mvtec_root:
        data.extend(mvtec_set(Path(config.mvtec_root), "train"))
    return data


def data_hash(data: LabelledSet) -> str:
    """sha256 over every training image's key and labels (and mask bytes): what was trained on."""
    digest = hashlib.sha256()
    for item in data.images:
        label = item.label
        digest.update(
            f"{item.key}|{item.pool}|{label.category}|{label.anomalous}|{label.defect_type}".encode()
        )
        if label.mask is not None:
            digest.update(np.packbits(label.mask).tobytes())
    return digest.hexdigest()


def prepare_examples(
    data: LabelledSet, tower: VisionTower, expert: PatchCoreExpert, log: Log, cache: Path | None = None
) -> list[Example]:
    """Expert evidence against each image's pool, then the tower's cells, for every image.

    With ``cache`` (a folder), the cells are stored under a name made of the data hash and the vision
    and expert configurations, and a later run with the same three loads them instead.
    """
    stored = None
    if cache is not None:
        fingerprint = f"{data_hash(data)}|{tower.config.model_dump_json()}|{expert.config.model_dump_json()}"
        stored = cache / f"examples-{hashlib.sha256(fingerprint.encode()).hexdigest()[:20]}.pt"
        if stored.is_file():
            saved = torch.load(stored)
            if saved["keys"] == [item.key for item in data.images] and "scores" in saved:
                log(f"  evidence and cells loaded from {stored}")
                pairs = zip(saved["cells"], saved["scores"].tolist(), strict=True)
                return [
                    Example(item, cells, score)
                    for item, (cells, score) in zip(data.images, pairs, strict=True)
                ]
    examples = _compute_examples(data, tower, expert, log)
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "keys": [e.source.key for e in examples],
                "cells": torch.stack([e.cells for e in examples]),
                "scores": torch.tensor([e.score for e in examples], dtype=torch.float64),
            },
            stored,
        )
    return examples


def _compute_examples(
    data: LabelledSet, tower: VisionTower, expert: PatchCoreExpert, log: Log
) -> list[Example]:
    banks = {}
    for pool, references in data.pools.items():
        banks[pool] = expert.fit([load() for _, load in references])
    examples: list[Example] = []
    started = time.perf_counter()
    batch: list[tuple[SourceImage, Image.Image, np.ndarray, float]] = []

    def flush() -> None:
        cells = tower.cells([image for _, image, _, _ in batch], [prior for _, _, prior, _ in batch])
        examples.extend(Example(item, c, score) for (item, _, _, score), c in zip(batch, cells, strict=True))
        batch.clear()

    for index, item in enumerate(data.images, start=1):
        image = item.load()
        anomaly = expert.analyse_with_bank(image, banks[item.pool])
        batch.append((item, image, anomaly.prior_map(), anomaly.score))
        if len(batch) == 16:
            flush()
        if index % 200 == 0:
            log(f"  evidence {index}/{len(data.images)} ({time.perf_counter() - started:.0f} s)")
    if batch:
        flush()
    return examples


def expert_for_training() -> PatchCoreExpert:
    """The vision expert whose evidence the model is trained on (the defaults, 256 px)."""
    return PatchCoreExpert(ExpertConfig(features=FeatureConfig(image_size=256)), cache_dir=None)
