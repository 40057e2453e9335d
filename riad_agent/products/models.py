"""What the product memory holds: products, their normal references, labelled defect exemplars, and
what recognising an image found (pydantic models, validated at every boundary)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from riad_agent.errors import InvalidRequestError, ProductExistsError

Pose = Literal["free", "fixed"]
RegionSource = Literal["mask", "expert"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._/-]{0,63}$")
_TYPE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")


def product_name(name: str) -> str:
    """The canonical (lower-case) product name, or :class:`InvalidRequestError` saying what is allowed."""
    canonical = name.strip().lower()
    if not _NAME.match(canonical) or ".." in canonical:
        raise InvalidRequestError(
            f"product name {name!r} is not allowed: 1-64 characters, letters, digits, '.', '_', '-', '/', "
            "starting with a letter or digit"
        )
    return canonical


def placement_advice(pose: str | None) -> str | None:
    """What a fixed-pose product's references must show, or None for another pose.

    ``pose``: the product's declared pose or the bank's resolved one ("fixed (references)"). Measured on
    the MVTec transistor train split: 4 references whose parts happen to sit alike flagged 30 % of the
    other good parts (those lying lower), another 4 flagged 4 % (docs/results.md, "What a verdict rests on").
    """
    if pose is None or not pose.startswith("fixed"):
        return None
    return (
        "fixed pose: a good part lying further from where these references lie reads as misplaced, so give "
        "references that show the line's normal placement (its highest, lowest and most turned good parts)"
    )


def defect_type_name(name: str) -> str:
    """The canonical defect type (lower case, spaces as '_'), or :class:`InvalidRequestError`."""
    canonical = "_".join(name.strip().lower().split())
    if not _TYPE.match(canonical):
        raise InvalidRequestError(
            f"defect type {name!r} is not allowed: 1-48 letters, digits, '_' or '-', e.g. 'scratch'"
        )
    return canonical


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProductReference(_Frozen):
    """One normal reference image of a product, stored under the products folder by content."""

    sha256: str = Field(description="SHA-256 of the stored PNG (its file name).")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    added_at: str


class DefectExemplar(_Frozen):
    """A labelled defect: the stored image, its region (pixels of the stored image) and where that came from."""

    id: str
    defect_type: str
    sha256: str
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    box: tuple[int, int, int, int] = Field(description="[x0, y0, x1, y1) of the defect in the stored image.")
    region_source: RegionSource
    mask_sha256: str | None = None
    added_at: str


class Product(_Frozen):
    """A registered product: its references, defect exemplars, linked knowledge category and pose."""

    name: str
    knowledge: str | None = Field(
        default=None, description="Knowledge category it links, e.g. 'mvtec/screw'."
    )
    pose: Pose | None = Field(default=None, description="None: the expert infers it from the references.")
    embedder: str = Field(description="The image embedder its vectors came from.")
    created_at: str
    references: list[ProductReference] = Field(default_factory=list)
    defects: list[DefectExemplar] = Field(default_factory=list)

    def check_same_settings(self, knowledge: str | None, pose: str | None, prefix: str, remedy: str) -> None:
        """Extending keeps the link and pose: a different one given is a :class:`ProductExistsError`.

        ``prefix`` names the settings as the caller wrote them ('--' on the CLI); ``remedy`` says how to
        start over there.
        """
        changed = [
            f"{prefix}{field} {given} (it has {had or 'none'})"
            for field, given, had in (("knowledge", knowledge, self.knowledge), ("pose", pose, self.pose))
            if given is not None and given != had
        ]
        if changed:
            raise ProductExistsError(
                f"product {self.name!r} is registered with other settings: {', '.join(changed)}; {remedy}"
            )

    def defect_counts(self) -> dict[str, int]:
        """How many exemplars of each defect type, by type."""
        counts: dict[str, int] = {}
        for defect in self.defects:
            counts[defect.defect_type] = counts.get(defect.defect_type, 0) + 1
        return dict(sorted(counts.items()))


class Recognition(_Frozen):
    """The nearest registered product of an image; ``product`` is None below the acceptance threshold."""

    product: str | None
    nearest: str | None = Field(description="The nearest product even when it was not accepted.")
    similarity: float = Field(description="Cosine similarity to the nearest product's closest reference.")
    threshold: float
    runner_up: str | None = None
    runner_up_similarity: float | None = None


class DefectMatch(_Frozen):
    """One defect type and its best exemplar's similarity to a region."""

    defect_type: str
    similarity: float
    exemplar: str
