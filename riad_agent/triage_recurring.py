"""Anomalous images of one product that peak at the same place: a pattern a batch shows, one image cannot.

Defects land at random places on a part; a place where most of a product's anomalous images peak is
either a defect that recurs there (worth knowing on a line) or normal variation the references do
not show (a fixtured part that sits a little lower, an edge that moves): few references that happen
to agree make a tight threshold there. Either way a person should look, so triage says so, in its
summary and on its page.

The rule: per product, the centres of the anomalous images' strongest regions (as fractions of each
image) are counted in a :data:`GRID` x :data:`GRID` grid; the 2 x 2 window of cells (a square an
eighth of the image wide) holding the most is the place, reported when it holds at least
:data:`MIN_IMAGES` images and :data:`MIN_SHARE` of the product's anomalous ones. Measured in
``docs/results.md`` ("Anomalous images that peak at the same place"): normal MVTec transistor train
parts flagged against 4 / 8 references peak there 9 of 13 / 10 of 11 times; generated defects at most
0.30 of the flagged, ELPV cells 0.17 (0.43 of 7).
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median

import numpy as np
from pydantic import BaseModel, ConfigDict

from riad_agent.triage_view import TriageRow

#: Cells per side of the grid the strongest regions' centres are counted in.
GRID = 16
#: A place needs this many anomalous images peaking there ...
MIN_IMAGES = 5
#: ... and this share of the product's anomalous images.
MIN_SHARE = 0.5
#: Paths named in the sentence.
NAMED = 3


class RecurringPlace(BaseModel):
    """Where most of a product's anomalous images peak, and which images do."""

    model_config = ConfigDict(frozen=True)

    product: str | None
    images: int  # anomalous images whose strongest region is centred in the place
    anomalous: int  # the product's anomalous images
    box: tuple[float, float, float, float]  # median strongest box of those images, fractions of the image
    size: tuple[int, int] | None  # the images' size when they all share one
    references: int | None  # how many references they were compared with, when they all say the same
    paths: list[str]

    def where(self) -> str:
        """The place in words: pixels when the images share a size, else percent of the image."""
        x0, y0, x1, y1 = self.box
        if self.size is not None:
            w, h = self.size
            return f"x {round(x0 * w)}-{round(x1 * w)}, y {round(y0 * h)}-{round(y1 * h)} of {w}x{h} px"
        return f"x {x0:.0%}-{x1:.0%}, y {y0:.0%}-{y1:.0%} of the image"

    def sentence(self) -> str:
        """What an operator reads: how many, where, the two readings and what to do."""
        of = f" of '{self.product}'" if self.product else ""
        basis = f"the {self.references} references" if self.references else "the references"
        named = ", ".join(self.paths[:NAMED]) + (", ..." if len(self.paths) > NAMED else "")
        return (
            f"{self.images} of the {self.anomalous} anomalous images{of} peak at the same place "
            f"({self.where()}; {named}): a defect that recurs there, or normal variation there that "
            f"{basis} do not show. Look at them; if they are good parts, add some to the references "
            "(a registered product: riad product add NAME --good IMAGE ..., or the register_product tool)."
        )


def _centre(row: TriageRow) -> tuple[float, float] | None:
    if row.box is None or row.size is None or min(row.size) <= 0:
        return None
    x0, y0, x1, y1 = row.box
    width, height = row.size
    return (
        min(max((x0 + x1) / 2 / width, 0.0), 1.0 - 1e-9),
        min(max((y0 + y1) / 2 / height, 0.0), 1.0 - 1e-9),
    )


def densest_place(rows: Sequence[TriageRow]) -> tuple[list[TriageRow], int]:
    """The anomalous rows whose strongest region is centred in the fullest 2 x 2 window of the grid,
    and how many anomalous rows there are (one product's rows; see the module docstring)."""
    flagged = [(row, centre) for row in rows if row.outcome == "anomalous" and (centre := _centre(row))]
    anomalous = sum(row.outcome == "anomalous" for row in rows)
    if not flagged:
        return [], anomalous
    counts = np.zeros((GRID, GRID), dtype=np.int64)
    cells = [(int(cy * GRID), int(cx * GRID)) for _, (cx, cy) in flagged]
    for cell in cells:
        counts[cell] += 1
    windows = counts[:-1, :-1] + counts[1:, :-1] + counts[:-1, 1:] + counts[1:, 1:]
    top, left = np.unravel_index(int(np.argmax(windows)), windows.shape)
    inside = [
        row
        for (row, _), (r, c) in zip(flagged, cells, strict=True)
        if top <= r <= top + 1 and left <= c <= left + 1
    ]
    return inside, anomalous


def _place(rows: Sequence[TriageRow]) -> RecurringPlace | None:
    """The place of one product's rows, or None (see the module docstring)."""
    inside, anomalous = densest_place(rows)
    if len(inside) < MIN_IMAGES or len(inside) < MIN_SHARE * anomalous:
        return None
    boxes = [
        (
            row.box[0] / row.size[0],
            row.box[1] / row.size[1],
            row.box[2] / row.size[0],
            row.box[3] / row.size[1],
        )
        for row in inside
        if row.box is not None and row.size is not None
    ]
    box = (
        median(b[0] for b in boxes),
        median(b[1] for b in boxes),
        median(b[2] for b in boxes),
        median(b[3] for b in boxes),
    )
    sizes = {row.size for row in inside}
    counted = {row.references for row in inside}
    inside.sort(key=lambda row: -(row.score or 0.0))
    return RecurringPlace(
        product=inside[0].product,
        images=len(inside),
        anomalous=anomalous,
        box=box,
        size=sizes.pop() if len(sizes) == 1 else None,
        references=counted.pop() if len(counted) == 1 else None,
        paths=[row.path for row in inside],
    )


def recurring_places(rows: Sequence[TriageRow]) -> list[RecurringPlace]:
    """One :class:`RecurringPlace` per product that has one, products in name order (unnamed last)."""
    by_product: dict[str | None, list[TriageRow]] = {}
    for row in rows:
        by_product.setdefault(row.product, []).append(row)
    places = []
    for product in sorted(by_product, key=lambda p: (p is None, p or "")):
        place = _place(by_product[product])
        if place is not None:
            places.append(place)
    return places
