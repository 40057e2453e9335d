"""Pose of the normal parts: is it fixed (a fixtured line) or free (parts lie at any rotation)?

A part whose references lie at different rotations must not have its pose called a defect, while on
a fixtured line (all references aligned) a rotated or shifted part *is* the defect (MVTec's
"misplaced"). So the pose is a property of the product: the knowledge entry may say ``pose: free``
or ``pose: fixed``; otherwise it is inferred here from the references themselves.

Inference: each reference's dominant edge orientation is measured inside the inscribed circle (the
magnitude-weighted mean of the doubled gradient angle, so a turn by 180 degrees counts as the same
orientation). Aligned references share it: the resultant length ``R`` of their unit orientation
vectors is close to 1; parts at random rotations scatter it. ``R < 0.97`` (a spread of about +-7
degrees; chosen on generated products and MVTec train splits, see docs/results.md) means ``free``.
Two or three references of a free part agree that well by chance (26 % of the pairs of hazelnut
train images, 7 % of their triples), while fixtured parts agree far better (every pair and triple of
transistor train images and generated brackets has R >= 0.997): so 2 references must reach 0.995
and 3 references 0.99 (``FIXED_AGREEMENT``, ``ExpertConfig.fixed_agreement``; hazelnut pairs then
11 %, triples 2 %; ``benchmarks/few_shot/pose_agreement.py``). Rotation-symmetric parts (a washer)
and textures come out either way, which is harmless for them: a free pose scores only the inscribed
disc when the references' corners are background (:func:`corner_content`), so a texture keeps its
corners scored. One reference cannot show a spread: the caller decides (the expert assumes
``ExpertConfig.single_reference_pose``, free by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from riad_agent.protocols import Pose

__all__ = [
    "FIXED_AGREEMENT",
    "Pose",
    "PoseEstimate",
    "border_fill",
    "corner_content",
    "dominant_orientation",
    "fixed_cutoff",
    "infer_pose",
    "rotated",
]


@dataclass(frozen=True)
class PoseEstimate:
    """The pose used for a bank and where it came from (``knowledge``, ``references`` or ``default``)."""

    pose: Pose
    source: str
    spread_degrees: float = 0.0  # circular spread of the references' orientation
    resultant: float = 1.0  # resultant length of their doubled-angle orientation vectors


def _circle(side: int) -> np.ndarray:
    ys, xs = np.mgrid[0:side, 0:side] - (side - 1) / 2
    return np.hypot(xs, ys) <= side / 2 - 1


def dominant_orientation(image: Image.Image, side: int = 128, sigma: float = 1.5) -> complex:
    """Magnitude-weighted mean of the doubled gradient angle inside the inscribed circle, as a complex."""
    array = ndimage.gaussian_filter(
        np.asarray(image.convert("L").resize((side, side), Image.Resampling.BILINEAR), dtype=np.float64),
        sigma,
    )
    gy, gx = ndimage.sobel(array, 0), ndimage.sobel(array, 1)
    doubled = ((gx + 1j * gy) ** 2)[_circle(side)]
    return complex(doubled.sum() / (np.abs(doubled).sum() + 1e-9))


#: The resultant length at or above which 2, 3, and 4 or more references are judged fixed.
FIXED_AGREEMENT: tuple[float, float, float] = (0.995, 0.99, 0.97)


def fixed_cutoff(count: int, agreement: Sequence[float] = FIXED_AGREEMENT) -> float:
    """The agreement ``count`` (>= 2) references need to be judged fixed: ``agreement[count - 2]``, the
    last entry for more (stricter for few references, which agree by chance)."""
    return float(agreement[min(max(count, 2) - 2, len(agreement) - 1)])


def infer_pose(
    images: Sequence[Image.Image], agreement: Sequence[float] = FIXED_AGREEMENT, max_images: int = 16
) -> PoseEstimate:
    """``free`` or ``fixed`` from the references' orientation spread (see the module docstring), at
    :func:`fixed_cutoff` of their number."""
    if len(images) < 2:
        return PoseEstimate("fixed", "default for 1 reference")
    used = images[:max_images]
    vectors = np.array([dominant_orientation(image) for image in used])
    units = vectors / (np.abs(vectors) + 1e-12)
    resultant = float(np.abs(units.mean()))
    spread = float(np.degrees(np.sqrt(max(0.0, -2.0 * np.log(max(resultant, 1e-9))))) / 2)
    pose: Pose = "fixed" if resultant >= fixed_cutoff(len(used), agreement) else "free"
    return PoseEstimate(pose, "references", spread, resultant)


def corner_content(images: Sequence[Image.Image], side: int = 128, max_images: int = 16) -> float:
    """How much the frame's corners (outside the inscribed circle) hold, relative to the circle's inside.

    Per reference: the mean colour distance of the corner pixels from the border colour (the outer
    ring's median) over the same inside the circle; the median over references. About 0.1 for a part
    on a plain background (its corners are background), about 1 for a texture or a part that fills
    the frame (a solar cell): there a free pose must still score the corners.
    """
    circle = _circle(side)
    ratios = []
    for image in images[:max_images]:
        pixels = ndimage.gaussian_filter(
            np.asarray(
                image.convert("RGB").resize((side, side), Image.Resampling.BILINEAR), dtype=np.float64
            ),
            (1.0, 1.0, 0),
        )
        ring = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        distance = np.linalg.norm(pixels - np.median(ring, axis=0), axis=-1)
        ratios.append(float(distance[~circle].mean() / (distance[circle].mean() + 1e-6)))
    return float(np.median(ratios)) if ratios else 0.0


def border_fill(image: Image.Image) -> tuple[int, int, int]:
    """The median colour of the image's outer ring of pixels (what a rotation fills the corners with)."""
    array = np.asarray(image.convert("RGB"))
    ring = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])
    median = np.median(ring, axis=0)
    return int(median[0]), int(median[1]), int(median[2])


def rotated(image: Image.Image, angle: float) -> Image.Image:
    """``image`` turned by ``angle`` degrees about its centre, same size, corners filled with its border."""
    if angle % 360 == 0:
        return image
    return image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=border_fill(image))
