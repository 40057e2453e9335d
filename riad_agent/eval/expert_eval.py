"""Evaluation of the vision expert on an MVTec-layout folder or on ELPV (``riad eval expert``).

MVTec layout: ``<cat>/train/good/*.png`` are the references (``--shots K`` takes a seeded random K
of them, 0 = all), ``<cat>/test/<type>/*.png`` the test images and
``<cat>/ground_truth/<type>/<name>_mask.png`` their masks. Reported per category and as the mean:
image AUROC, pixel AUROC, AUPRO up to 30 % FPR and milliseconds per image once the bank is built.
``--draws N`` repeats the evaluation with the seeds SEED .. SEED+N-1 (other references, other turns)
and reports each category's means with the range of its AUROC and verdict (:func:`pool_draws`).

``--data elpv`` evaluates on the ``elpv-dataset`` wheel (CC BY-NC-SA 4.0, evaluation only, never a
dependency: install it yourself). Image level only, mono and poly cells separately. Protocol: per
cell type, a seeded half of the normal cells (defect probability 0) is the reference pool (``--shots``
of them, 0 = up to 200); the test set is the other normal cells plus the defective cells with
probability >= 0.5 (cells marked 1/3, "possibly defective", are left out of the main figure and
reported in ``image_auroc_all`` where they count as defective).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import BaseModel
from rich.progress import Progress
from rich.table import Table

from riad_agent.errors import InvalidRequestError
from riad_agent.eval.expert_metrics import aupro, image_auroc, pixel_auroc
from riad_agent.expert.expert import ExpertConfig, PatchCoreExpert
from riad_agent.expert.features import FeatureConfig
from riad_agent.expert.pose import rotated
from riad_agent.explain import UNCERTAIN_BAND
from riad_agent.protocols import Pose

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


class CategoryResult(BaseModel):
    """Metrics of one category."""

    category: str
    n_references: int
    n_test_good: int
    n_test_anomalous: int
    image_auroc: float
    pixel_auroc: float | None = None
    aupro_30: float | None = None
    image_auroc_all: float | None = None
    normal_below_half: float | None = None
    anomalous_above_half: float | None = None
    verdict_balanced_accuracy: float | None = None
    uncertain_fraction: float | None = None
    confidently_wrong: float | None = None  # a good part at >= 0.8 or a defect at <= 0.2, of all test images
    pose: str | None = None
    ms_per_image: float
    fit_seconds: float
    draws: int = 1  # reference draws averaged (``pool_draws``); the ranges below only when more than one
    image_auroc_range: tuple[float, float] | None = None
    verdict_balanced_accuracy_range: tuple[float, float] | None = None


class ExpertEvaluation(BaseModel):
    """Per-category results and their means."""

    dataset: str
    shots: int
    draws: int = 1
    image_size: int
    backbone: str
    categories: list[CategoryResult]
    mean: dict[str, float]


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())


def _open(path: Path) -> Image.Image:
    from riad_agent.imaging import load_image

    return load_image(path).image


def _load_mask(folder: Path, defect: str, name: str, shape: tuple[int, int]) -> np.ndarray:
    candidates = [
        folder / "ground_truth" / defect / f"{name}_mask.png",
        folder / "ground_truth" / defect / f"{name}.png",
    ]
    for candidate in candidates:
        if candidate.is_file():
            with Image.open(candidate) as mask:
                array = np.asarray(mask.convert("L")) > 127
            if array.shape != shape:
                array = np.asarray(Image.fromarray(array).resize(shape[::-1], Image.Resampling.NEAREST))
            return array
    raise InvalidRequestError(
        f"no mask for {folder.name}/test/{defect}/{name} under {folder / 'ground_truth' / defect}"
    )


def _pick(items: Sequence[Path], shots: int, seed: int) -> list[Path]:
    if shots <= 0 or shots >= len(items):
        return list(items)
    order = np.random.default_rng(seed).permutation(len(items))[:shots]
    return [items[int(i)] for i in sorted(order)]


def expert_for(backbone: str, size: int, texture: bool, cache_dir: Path | None) -> PatchCoreExpert:
    """The expert under test; ``texture`` is the setting for EL cells and textures (see eval_expert)."""
    features = FeatureConfig(image_size=size, normalise_intensity=texture)
    if texture:
        # a defect in a cell or texture spans many patches: the image score is the mean of the top 20
        # (about 2 % of a 32 x 32 grid), unsmoothed (the alternatives tried are in docs/results.md)
        config = ExpertConfig(backbone=backbone, features=features, top_k=20, grid_sigma=0.0, heatmap=False)
    else:
        config = ExpertConfig(backbone=backbone, features=features, heatmap=False)
    return PatchCoreExpert(config, cache_dir=cache_dir)


def _halves(labels: list[bool], scores: list[float]) -> tuple[float, float]:
    y, s = np.asarray(labels), np.asarray(scores)
    normal = float((s[~y] < 0.5).mean()) if (~y).any() else float("nan")
    anomalous = float((s[y] > 0.5).mean()) if y.any() else float("nan")
    return normal, anomalous


def verdict_balanced_accuracy(
    labels: Sequence[bool], scores: Sequence[float], band: float = UNCERTAIN_BAND
) -> tuple[float, float]:
    """(balanced accuracy of the verdict, fraction ``uncertain``) at the shipped threshold 0.5.

    ``anomalous`` needs a score >= 0.5 + band, ``normal`` <= 0.5 - band (riad_agent.explain);
    ``uncertain`` (in between) counts as wrong for both classes.
    """
    y, s = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=np.float64)
    rates = []
    if (~y).any():
        rates.append(float((s[~y] <= 0.5 - band).mean()))
    if y.any():
        rates.append(float((s[y] >= 0.5 + band).mean()))
    uncertain = float(((s > 0.5 - band) & (s < 0.5 + band)).mean()) if s.size else 0.0
    return float(np.mean(rates)) if rates else float("nan"), uncertain


def confidently_wrong(labels: Sequence[bool], scores: Sequence[float], margin: float = 0.3) -> float:
    """Share of the images on the wrong side of 0.5 by ``margin`` or more (a good part at >= 0.8, a
    defect at <= 0.2 by default): the answers an operator would trust and should not."""
    y, s = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=np.float64)
    if not s.size:
        return 0.0
    return float(np.where(y, s <= 0.5 - margin, s >= 0.5 + margin).mean())


def _rotate_query(image: Image.Image, mask: np.ndarray, seed: int) -> tuple[Image.Image, np.ndarray]:
    """The image (and its mask) turned by a seeded random angle in [20, 340] degrees, corners filled."""
    angle = float(np.random.default_rng(seed).uniform(20.0, 340.0))
    turned_mask = Image.fromarray(mask.astype(np.uint8) * 255).rotate(
        angle, resample=Image.Resampling.NEAREST
    )
    return rotated(image, angle), np.asarray(turned_mask) > 127


def evaluate_mvtec(
    root: Path,
    expert: PatchCoreExpert,
    shots: int = 0,
    categories: Sequence[str] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    rotate: bool = False,
    pose: Pose | None = None,
) -> list[CategoryResult]:
    """Evaluate every category folder (one with ``train/good``) under ``root``.

    ``rotate`` turns every test image (and mask) by a seeded random angle, the references stay as they
    are (pose robustness); ``pose`` ("free"/"fixed") is passed to the expert as a knowledge entry would.
    """
    if not root.is_dir():
        raise InvalidRequestError(f"--data {root} is not a folder (expected MVTec layout: <cat>/train/good)")
    found = sorted(p.name for p in root.iterdir() if (p / "train" / "good").is_dir())
    wanted = list(categories) if categories else found
    missing = [c for c in wanted if c not in found]
    if missing or not wanted:
        raise InvalidRequestError(
            f"no MVTec category folder(s) {', '.join(missing) or '(any)'} under {root}; found: {', '.join(found) or 'none'}"
        )
    results = []
    for category in wanted:
        folder = root / category
        references = [_open(p) for p in _pick(_images_in(folder / "train" / "good"), shots, seed)]
        tests = [
            (d.name, p) for d in sorted((folder / "test").iterdir()) if d.is_dir() for p in _images_in(d)
        ]
        task = progress.add_task(f"{category}", total=len(tests)) if progress else None
        started = time.perf_counter()
        bank = expert.fit(references, pose=pose)
        fit_seconds = time.perf_counter() - started
        labels, scores, masks, maps, elapsed = [], [], [], [], 0.0
        for index, (defect, path) in enumerate(tests):
            image = _open(path)
            size = image.size[::-1]
            mask = (
                np.zeros(size, dtype=bool)
                if defect == "good"
                else _load_mask(folder, defect, path.stem, size)
            )
            if rotate:
                image, mask = _rotate_query(image, mask, seed * 1000 + index)
            tick = time.perf_counter()
            result = expert.analyse_with_bank(image, bank)
            elapsed += time.perf_counter() - tick
            labels.append(defect != "good")
            scores.append(result.score)
            shape = result.pixel_scores.shape
            if mask.shape != shape:
                mask = np.asarray(Image.fromarray(mask).resize(shape[::-1], Image.Resampling.NEAREST))
            masks.append(mask)
            maps.append(result.pixel_scores)
            if progress is not None and task is not None:
                progress.advance(task)
        has_regions = any(m.any() for m in masks)
        normal_ok, anomalous_ok = _halves(labels, scores)
        balanced, uncertain = verdict_balanced_accuracy(labels, scores)
        results.append(
            CategoryResult(
                category=category,
                n_references=len(references),
                n_test_good=labels.count(False),
                n_test_anomalous=labels.count(True),
                image_auroc=image_auroc(labels, scores),
                pixel_auroc=pixel_auroc(masks, maps) if has_regions else None,
                aupro_30=aupro(masks, maps, 0.3) if has_regions else None,
                normal_below_half=normal_ok,
                anomalous_above_half=anomalous_ok,
                verdict_balanced_accuracy=balanced,
                uncertain_fraction=uncertain,
                confidently_wrong=confidently_wrong(labels, scores),
                pose=bank.meta.get("pose"),
                ms_per_image=1000.0 * elapsed / max(1, len(tests)),
                fit_seconds=fit_seconds,
            )
        )
    return results


def evaluate_elpv(
    expert: PatchCoreExpert,
    shots: int = 0,
    categories: Sequence[str] | None = None,
    seed: int = 0,
    limit: int = 0,
    progress: Progress | None = None,
) -> list[CategoryResult]:
    """ELPV mono/poly cells, image level (see the module docstring for the protocol)."""
    try:
        from elpv_dataset.utils import load_dataset
    except ImportError as exc:
        raise InvalidRequestError(
            "--data elpv needs the elpv-dataset package (CC BY-NC-SA 4.0, evaluation only): pip install elpv-dataset"
        ) from exc
    images, probabilities, types = load_dataset()
    wanted = list(categories) if categories else ["mono", "poly"]
    results = []
    for kind in wanted:
        if kind not in ("mono", "poly"):
            raise InvalidRequestError(f"ELPV categories are 'mono' and 'poly' (got {kind!r})")
        rng = np.random.default_rng(seed)
        of_kind = np.flatnonzero(types == kind)
        normal = rng.permutation(of_kind[probabilities[of_kind] == 0])
        pool, test_normal = normal[: len(normal) // 2], normal[len(normal) // 2 :]
        defective = of_kind[probabilities[of_kind] >= 0.5]
        possible = of_kind[(probabilities[of_kind] > 0) & (probabilities[of_kind] < 0.5)]
        if limit > 0:
            test_normal, defective = test_normal[:limit], rng.permutation(defective)[:limit]
            possible = rng.permutation(possible)[: max(1, limit // 2)]
        count = shots if shots > 0 else min(200, len(pool))
        references = [Image.fromarray(images[int(i)]) for i in pool[:count]]
        test = [(int(i), False) for i in test_normal] + [(int(i), True) for i in defective]
        extra = [(int(i), True) for i in possible]
        task = progress.add_task(f"elpv/{kind}", total=len(test) + len(extra)) if progress else None
        started = time.perf_counter()
        bank = expert.fit(references)
        fit_seconds = time.perf_counter() - started
        scored: dict[int, float] = {}
        elapsed = 0.0
        for index, _ in test + extra:
            tick = time.perf_counter()
            scored[index] = expert.analyse_with_bank(Image.fromarray(images[index]), bank).score
            elapsed += time.perf_counter() - tick
            if progress is not None and task is not None:
                progress.advance(task)
        labels = [flag for _, flag in test]
        scores = [scored[i] for i, _ in test]
        all_labels = labels + [True] * len(extra)
        all_scores = scores + [scored[i] for i, _ in extra]
        normal_ok, anomalous_ok = _halves(labels, scores)
        balanced, uncertain = verdict_balanced_accuracy(labels, scores)
        results.append(
            CategoryResult(
                category=f"elpv/{kind}",
                n_references=len(references),
                n_test_good=labels.count(False),
                n_test_anomalous=labels.count(True),
                image_auroc=image_auroc(labels, scores),
                image_auroc_all=image_auroc(all_labels, all_scores),
                normal_below_half=normal_ok,
                anomalous_above_half=anomalous_ok,
                verdict_balanced_accuracy=balanced,
                uncertain_fraction=uncertain,
                confidently_wrong=confidently_wrong(labels, scores),
                pose=bank.meta.get("pose"),
                ms_per_image=1000.0 * elapsed / max(1, len(test) + len(extra)),
                fit_seconds=fit_seconds,
            )
        )
    return results


_AVERAGED = (
    "n_references",
    "n_test_good",
    "n_test_anomalous",
    "image_auroc",
    "pixel_auroc",
    "aupro_30",
    "image_auroc_all",
    "normal_below_half",
    "anomalous_above_half",
    "verdict_balanced_accuracy",
    "uncertain_fraction",
    "confidently_wrong",
    "ms_per_image",
    "fit_seconds",
)


def pool_draws(draws: Sequence[list[CategoryResult]]) -> list[CategoryResult]:
    """Each category's results over several reference draws: the means, and the range of its image AUROC
    and verdict balanced accuracy (which few references a user has moves both; docs/results.md)."""
    if len(draws) == 1:
        return list(draws[0])
    pooled = []
    for results in zip(*draws, strict=True):
        first = results[0]
        values: dict[str, object] = {}
        for name in _AVERAGED:
            found = [getattr(r, name) for r in results if getattr(r, name) is not None]
            mean = float(np.mean(found)) if found else None
            values[name] = round(mean) if mean is not None and name.startswith("n_") else mean
        auroc = [r.image_auroc for r in results]
        balanced = [r.verdict_balanced_accuracy for r in results if r.verdict_balanced_accuracy is not None]
        poses = list(dict.fromkeys(r.pose for r in results if r.pose))
        pooled.append(
            first.model_copy(
                update={
                    **values,
                    "pose": " / ".join(poses) or None,
                    "draws": len(results),
                    "image_auroc_range": (min(auroc), max(auroc)),
                    "verdict_balanced_accuracy_range": (min(balanced), max(balanced)) if balanced else None,
                }
            )
        )
    return pooled


def mean_of(results: list[CategoryResult]) -> dict[str, float]:
    out: dict[str, float] = {}
    for field in (
        "image_auroc",
        "pixel_auroc",
        "aupro_30",
        "image_auroc_all",
        "verdict_balanced_accuracy",
        "confidently_wrong",
        "ms_per_image",
    ):
        values = [getattr(r, field) for r in results if getattr(r, field) is not None]
        if values:
            out[field] = float(np.mean(values))
    return out


def table(evaluation: ExpertEvaluation) -> Table:
    drawn = f", mean of {evaluation.draws} reference draws, range below" if evaluation.draws > 1 else ""
    table = Table(title=f"vision expert on {evaluation.dataset} ({evaluation.shots or 'all'} shots{drawn})")
    columns = (
        "category",
        "refs",
        "pose",
        "good/bad",
        "image AUROC",
        "verdict bal.acc",
        "conf. wrong",
        "pixel AUROC",
    )
    for column in (*columns, "AUPRO@30%", "ms/img"):
        table.add_column(column)

    def fmt(value: float | None, spread: tuple[float, float] | None = None) -> str:
        if value is None:
            return "-"
        return f"{value:.3f}" + (f"\n{spread[0]:.2f}-{spread[1]:.2f}" if spread else "")  # the range below

    for r in evaluation.categories:
        table.add_row(
            r.category,
            str(r.n_references),
            r.pose or "-",
            f"{r.n_test_good}/{r.n_test_anomalous}",
            fmt(r.image_auroc, r.image_auroc_range),
            fmt(r.verdict_balanced_accuracy, r.verdict_balanced_accuracy_range),
            fmt(r.confidently_wrong),
            fmt(r.pixel_auroc),
            fmt(r.aupro_30),
            f"{r.ms_per_image:.0f}",
        )
    m = evaluation.mean
    table.add_row(
        "mean",
        "",
        "",
        "",
        fmt(m.get("image_auroc")),
        fmt(m.get("verdict_balanced_accuracy")),
        fmt(m.get("confidently_wrong")),
        fmt(m.get("pixel_auroc")),
        fmt(m.get("aupro_30")),
        f"{m.get('ms_per_image', 0):.0f}",
    )
    return table
