"""Labelled images for the builtin model's training and for `riad eval qa`, with fixed, disjoint splits.

Every image has an MMAD-style key (``<Dataset>/<product>/...``; normal images have 'good' in it, as
MMAD's scorer expects), a loader, its labels and the key of its *reference pool*: the normal images
the vision expert compares it with.

Splits (seeded, documented in ``docs/results.md``):

* MVTec AD folders (``category/train/good``, ``category/test/<type>``, ``ground_truth``):
  train = references ``train/good[:25]`` + queries ``train/good[25:]`` (normal only);
  test = every ``test`` image, references = all of ``train/good``. Test images are never trained on.
* ELPV (the ``elpv-dataset`` wheel, evaluation and training only, never shipped): per cell type, a
  seeded permutation of the normal cells (probability 0) gives the references (first 50), the
  training normals (up to the middle) and the test normals (the second half); cells with probability
  >= 0.5 are split in half, train / test. Cells rated 1/3 are left out (uncertain labels).
* Synthetic parts (the project's generator): train only; references are 8 normal samples per part.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from riad_agent.data.synthetic import CATEGORIES as SYNTHETIC_CATEGORIES
from riad_agent.data.synthetic import DEFECTS as SYNTHETIC_DEFECTS
from riad_agent.data.synthetic import generate_sample
from riad_agent.errors import InvalidRequestError
from riad_agent.question_sets.questions import LabelledImage, knowledge_files

Split = Literal["train", "test"]
MVTEC_REFERENCES_IN_TRAIN = 25
ELPV_REFERENCES = 50
SYNTHETIC_REFERENCES = 8


@dataclass
class SourceImage:
    """One labelled image and the reference pool it is judged against."""

    key: str
    load: Callable[[], Image.Image]
    label: LabelledImage
    pool: str


@dataclass
class LabelledSet:
    """Images plus their reference pools (pool key -> [(key, loader)])."""

    images: list[SourceImage] = field(default_factory=list)
    pools: dict[str, list[tuple[str, Callable[[], Image.Image]]]] = field(default_factory=dict)

    def extend(self, other: LabelledSet) -> None:
        self.images += other.images
        self.pools.update(other.pools)


def _file_loader(path: Path) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        with Image.open(path) as image:
            return image.convert("RGB")

    return load


def _array_loader(pixels: np.ndarray) -> Callable[[], Image.Image]:
    return lambda: Image.fromarray(pixels).convert("RGB")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})


def _mask(root: Path, category: str, defect: str, name: str) -> np.ndarray | None:
    folder = root / category / "ground_truth" / defect
    for candidate in (folder / f"{Path(name).stem}_mask.png", folder / name):
        if candidate.is_file():
            with Image.open(candidate) as mask:
                return np.asarray(mask.convert("L")) > 127
    return None


MVTEC_KEY = "MVTec-AD"
"""The dataset folder of MVTec-layout images in a written question set (MMAD's name)."""


def _knowledge_category(root: Path, category: str, knowledge_dataset: str) -> str:
    """The knowledge file the questions about ``root/category`` are made from (see :func:`mvtec_set`)."""
    files = knowledge_files()
    test = root / category / "test"
    types = {p.name for p in test.iterdir() if p.is_dir() and p.name != "good"} if test.is_dir() else set()
    elsewhere = sorted(
        key
        for key in files
        if key.split("/", 1)[1] == category and not key.startswith(f"{knowledge_dataset}/")
    )
    named = [f"{knowledge_dataset}/{category}", *elsewhere]
    for key in named:
        if key in files and types <= {d.type for d in files[key].defects}:
            return key
    raise InvalidRequestError(
        f"no knowledge file describes {category!r} with its defect types ({', '.join(sorted(types)) or 'none'}); "
        f"questions are made from one (tried {', '.join(named)}): add a category file to the knowledge base"
    )


def mvtec_set(
    root: Path,
    split: Split,
    categories: list[str] | None = None,
    knowledge_dataset: str = "mvtec",
    key_dataset: str = MVTEC_KEY,
) -> LabelledSet:
    """MVTec AD-layout folder -> labelled set (see the module docstring for the split).

    Categories are looked up as ``<knowledge_dataset>/<folder>``, else as the knowledge category of
    that name in another dataset whose defect types cover the folder's (a generated layout's
    ``washer`` is ``synthetic/washer``); keys start with ``key_dataset``.
    """
    if not root.is_dir():
        raise InvalidRequestError(f"{root} is not a folder with MVTec AD categories")
    names = categories or sorted(p.name for p in root.iterdir() if (p / "train" / "good").is_dir())
    out = LabelledSet()
    for category in names:
        knowledge_category = _knowledge_category(root, category, knowledge_dataset)
        good = _images(root / category / "train" / "good")
        if len(good) < 2:
            raise InvalidRequestError(f"{root / category / 'train' / 'good'} needs at least 2 normal images")
        pool = f"{key_dataset}/{category}"
        cut = min(MVTEC_REFERENCES_IN_TRAIN, len(good) // 2)
        references = good[:cut] if split == "train" else good
        out.pools[pool] = [(f"{pool}/train/good/{p.name}", _file_loader(p)) for p in references]
        if split == "train":
            for path in good[cut:]:
                label = LabelledImage(knowledge_category, anomalous=False)
                out.images.append(
                    SourceImage(f"{pool}/train/good/{path.name}", _file_loader(path), label, pool)
                )
            continue
        for folder in sorted(p for p in (root / category / "test").iterdir() if p.is_dir()):
            for path in _images(folder):
                normal = folder.name == "good"
                label = LabelledImage(
                    knowledge_category,
                    anomalous=not normal,
                    defect_type=None if normal else folder.name,
                    mask=None if normal else _mask(root, category, folder.name, path.name),
                )
                key = f"{pool}/test/{folder.name}/{path.name}"
                out.images.append(SourceImage(key, _file_loader(path), label, pool))
    return out


def elpv_set(split: Split, per_class: int | None = None, seed: int = 0) -> LabelledSet:
    """ELPV cells (``elpv-dataset`` wheel): up to ``per_class`` normal and defective cells per type."""
    try:
        from elpv_dataset.utils import load_dataset
    except ImportError as exc:
        raise InvalidRequestError(
            "ELPV needs the elpv-dataset package (CC BY-NC-SA 4.0): pip install elpv-dataset"
        ) from exc
    images, probabilities, types = load_dataset()
    out = LabelledSet()
    for kind in ("mono", "poly"):
        rng = np.random.default_rng([seed, 0 if kind == "mono" else 1])
        of_kind = np.flatnonzero(types == kind)
        normal = rng.permutation(of_kind[probabilities[of_kind] == 0])
        defective = rng.permutation(of_kind[probabilities[of_kind] >= 0.5])
        half_n, half_d = len(normal) // 2, len(defective) // 2
        if split == "train":
            chosen_n, chosen_d = normal[ELPV_REFERENCES:half_n], defective[:half_d]
        else:
            chosen_n, chosen_d = normal[half_n:], defective[half_d:]
        if per_class is not None:
            chosen_n, chosen_d = chosen_n[:per_class], chosen_d[:per_class]
        pool = f"ELPV/solar_cell/{kind}"
        out.pools[pool] = [
            (f"{pool}/reference/good/{i:04d}.png", _array_loader(images[i])) for i in normal[:ELPV_REFERENCES]
        ]
        for index, anomalous in [(int(i), False) for i in chosen_n] + [(int(i), True) for i in chosen_d]:
            folder = "defective" if anomalous else "good"
            key = f"ELPV/solar_cell/{split}/{folder}/{kind}_{index:04d}.png"
            label = LabelledImage("elpv/solar_cell", anomalous=anomalous)
            out.images.append(SourceImage(key, _array_loader(images[index]), label, pool))
    return out


def synthetic_set(per_category: int, seed: int = 0, size: int = 256) -> LabelledSet:
    """Generated parts (train only): half normal, half with each defect kind in turn, exact masks."""
    out = LabelledSet()
    for c, category in enumerate(SYNTHETIC_CATEGORIES):
        name = category.split("/", 1)[1]
        pool = f"Synthetic/{name}"
        references = []
        for r in range(SYNTHETIC_REFERENCES):
            sample = generate_sample(category, None, seed=10_000_000 + 1000 * c + r, size=size)
            references.append((f"{pool}/reference/good/{r:03d}.png", _encoded(sample.image)))
        out.pools[pool] = references
        for i in range(per_category):
            defect = None if i % 2 == 0 else SYNTHETIC_DEFECTS[(i // 2) % len(SYNTHETIC_DEFECTS)]
            sample = generate_sample(category, defect, seed=seed * 1_000_003 + 100_000 * c + i, size=size)
            label = LabelledImage(
                category,
                anomalous=defect is not None,
                defect_type=defect,
                mask=sample.mask if defect else None,
            )
            folder = defect or "good"
            out.images.append(
                SourceImage(f"{pool}/train/{folder}/{i:04d}.png", _encoded(sample.image), label, pool)
            )
    return out


def _encoded(image: Image.Image) -> Callable[[], Image.Image]:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()

    def load() -> Image.Image:
        with Image.open(io.BytesIO(data)) as decoded:
            return decoded.convert("RGB")

    return load
