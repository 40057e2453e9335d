"""``riad eval injection``: do the patches the latent loop keeps lie on the defect?

For every anomalous image with a ground-truth mask (generated ones from
:mod:`riad_agent.data.synthetic`, and an MVTec AD-layout folder's defective test images with their
``ground_truth`` masks) the vision expert scores the image against normal references, the reasoner
runs with that prior, and a case is a *hit* when at least one patch of the decode (``trace.kept``)
has a pixel box that overlaps the mask. The share of hits is the figure; the first candidate set
tried and the number of cases that kept no patch are reported beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from riad_agent.data.synthetic import CATEGORIES, DEFECTS, generate_sample
from riad_agent.errors import InvalidRequestError
from riad_agent.evidence import reasoning_input
from riad_agent.protocols import Expert, Reasoner
from riad_agent.schemas import PatchRef

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class InjectionCase:
    """One anomalous image, its defect mask (image-sized, True on the defect) and normal references."""

    source: str
    name: str
    image: Image.Image
    mask: np.ndarray
    references: Sequence[Image.Image]


class InjectionTally(BaseModel):
    """Hits of one source: kept patches on the defect, first candidate on the defect, nothing kept."""

    cases: int = 0
    kept_hits: int = 0
    tried_hits: int = 0
    kept_none: int = 0
    chance_hits: float = Field(
        default=0.0, description="Expected hits of random cell sets of the kept sizes."
    )
    kept_patches: int = 0
    kept_on_defect: int = Field(default=0, description="Kept patches whose box overlaps the mask.")

    @property
    def kept_rate(self) -> float:
        return self.kept_hits / self.cases if self.cases else 0.0

    @property
    def tried_rate(self) -> float:
        return self.tried_hits / self.cases if self.cases else 0.0

    @property
    def precision(self) -> float:
        """Share of all kept patches that lie on the defect."""
        return self.kept_on_defect / self.kept_patches if self.kept_patches else 0.0

    @property
    def chance_rate(self) -> float:
        return self.chance_hits / self.cases if self.cases else 0.0


class InjectionEvalResult(BaseModel):
    """Tallies per source (``generated``, ``mvtec/<category>``) and over all cases."""

    sources: dict[str, InjectionTally] = Field(default_factory=dict)
    misses: list[str] = Field(default_factory=list, description="Cases whose kept patches missed the mask.")

    @property
    def total(self) -> InjectionTally:
        total = InjectionTally()
        for tally in self.sources.values():
            total.cases += tally.cases
            total.kept_hits += tally.kept_hits
            total.tried_hits += tally.tried_hits
            total.kept_none += tally.kept_none
            total.chance_hits += tally.chance_hits
            total.kept_patches += tally.kept_patches
            total.kept_on_defect += tally.kept_on_defect
        return total


def overlaps(refs: Sequence[PatchRef], mask: np.ndarray) -> bool:
    """Whether any patch's pixel box ``(x0, y0, x1, y1)`` covers a mask pixel."""
    for ref in refs:
        x0, y0, x1, y1 = ref.box
        if bool(mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)].any()):
            return True
    return False


def chance_of_hit(refs: Sequence[PatchRef], mask: np.ndarray) -> float:
    """Probability that as many cells drawn at random (grid inferred from the patches' boxes) hit the mask."""
    if not refs:
        return 0.0
    height, width = mask.shape
    x0, y0, x1, y1 = refs[0].box
    cols = max(1, round(width / max(1, x1 - x0)))
    rows = max(1, round(height / max(1, y1 - y0)))
    on_defect = 0
    for r in range(rows):
        for c in range(cols):
            cell = mask[
                r * height // rows : (r + 1) * height // rows, c * width // cols : (c + 1) * width // cols
            ]
            on_defect += bool(cell.any())
    cells, drawn = rows * cols, min(len(refs), rows * cols)
    return 1.0 - math.comb(cells - on_defect, drawn) / math.comb(cells, drawn)


def generated_cases(
    count: int, size: int = 256, seed: int = 0, references: int = 4
) -> Iterator[InjectionCase]:
    """``count`` anomalous generated images (categories x defects in turn) with ``references`` normals each."""
    combos = [(category, defect) for defect in DEFECTS for category in CATEGORIES]
    for i in range(count):
        category, defect = combos[i % len(combos)]
        case_seed = seed * 100_000 + i
        sample = generate_sample(category, defect, case_seed, size)
        if not sample.mask.any():
            continue
        normals = [
            generate_sample(category, None, case_seed + 50_000 + k, size).image for k in range(references)
        ]
        yield InjectionCase(
            "generated", f"{category}/{defect}/{case_seed}", sample.image, sample.mask, normals
        )


def _images(folder: Path) -> list[Path]:
    return (
        sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES) if folder.is_dir() else []
    )


def mvtec_cases(root: Path, references: int = 4, limit: int | None = None) -> Iterator[InjectionCase]:
    """The defective test images of each category under ``root`` that have a ground-truth mask.

    References are the first ``references`` images of the category's ``train/good``.
    """
    if not root.is_dir():
        raise InvalidRequestError(f"{root} is not a folder; give an MVTec AD-layout folder")
    produced = 0
    for category in sorted(p for p in root.iterdir() if (p / "test").is_dir()):
        normals = [_open(path) for path in _images(category / "train" / "good")[:references]]
        if not normals:
            continue
        for defect in sorted(p for p in (category / "test").iterdir() if p.is_dir() and p.name != "good"):
            for path in _images(defect):
                mask_path = category / "ground_truth" / defect.name / f"{path.stem}_mask.png"
                if not mask_path.is_file():
                    continue
                if limit is not None and produced >= limit:
                    return
                mask = np.asarray(Image.open(mask_path).convert("L")) > 0
                if not mask.any():
                    continue
                produced += 1
                name = f"{category.name}/{defect.name}/{path.name}"
                yield InjectionCase(f"mvtec/{category.name}", name, _open(path), mask, normals)


def _open(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def run_injection_eval(
    reasoner: Reasoner,
    expert: Expert,
    cases: Sequence[InjectionCase] | Iterator[InjectionCase],
    steps: int = 3,
    progress: Callable[[str, int], None] | None = None,
) -> InjectionEvalResult:
    """Score each case with the expert, reason with its prior (the default question), tally the hits."""
    result = InjectionEvalResult()
    for done, case in enumerate(cases, start=1):
        anomaly = expert.analyse(case.image, list(case.references))
        request = reasoning_input(
            case.image, templates=list(case.references[:1]), expert=anomaly, latent_steps=steps, seed=done
        )
        trace = reasoner.reason(request).trace
        tally = result.sources.setdefault(case.source, InjectionTally())
        tally.cases += 1
        kept = list(trace.kept)
        first = next((it.kept or it.tried for it in trace.iterations if it.kept or it.tried), kept)
        hit = overlaps(kept, case.mask)
        tally.kept_hits += hit
        tally.tried_hits += overlaps(first, case.mask)
        tally.kept_none += not kept
        tally.chance_hits += chance_of_hit(kept, case.mask)
        tally.kept_patches += len(kept)
        tally.kept_on_defect += sum(overlaps([ref], case.mask) for ref in kept)
        if not hit:
            result.misses.append(case.name)
        if progress is not None:
            progress(case.name, done)
    return result


def injection_markdown(result: InjectionEvalResult) -> str:
    """A table: per source, cases, share with a kept patch on the defect, the same for random cells of
    the kept sets' sizes (chance), the share of kept patches on the defect, the first set's share,
    cases that kept none."""
    lines = [
        "| source | cases | kept patch on defect | random cells (chance) | kept patches on defect | "
        "first set on defect | kept none |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [*result.sources.items(), ("all", result.total)]
    for name, tally in rows:
        lines.append(
            f"| {name} | {tally.cases} | {100 * tally.kept_rate:.1f}% ({tally.kept_hits}) | "
            f"{100 * tally.chance_rate:.1f}% | {100 * tally.precision:.1f}% of {tally.kept_patches} | "
            f"{100 * tally.tried_rate:.1f}% ({tally.tried_hits}) | {tally.kept_none} |"
        )
    return "\n".join(lines)
