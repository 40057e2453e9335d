"""The protocols the graph and the tools depend on, and the values that cross them.

The graph never imports a concrete expert, knowledge store or reasoner: it is given objects that
satisfy these protocols (see ``riad_agent.components``), so each part can be swapped or faked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from riad_agent.schemas import KnowledgeHit, MultipleChoiceQuestion, ReasoningTrace, Region, RegionDescription

#: How a product's normal parts lie: "fixed" (a fixtured line; a turned or shifted part is a defect)
#: or "free" (any rotation is normal).
Pose = Literal["free", "fixed"]


@runtime_checkable
class TextEmbedder(Protocol):
    """Dense sentence embeddings (unit-normalised rows)."""

    model_id: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return a float32 array of shape (len(texts), dimension)."""
        ...


@runtime_checkable
class KnowledgeBase(Protocol):
    """Category knowledge: what normal looks like and each defect type's cues."""

    def search(self, query: str, category: str | None = None, k: int = 4) -> list[KnowledgeHit]:
        """Top-k entries for the query, within ``category`` when given (raises UnknownCategoryError)."""
        ...

    def categories(self) -> list[str]:
        """Every category with at least one entry, as 'dataset/category'."""
        ...

    def resolve_category(self, name: str) -> str:
        """Map 'hazelnut' or 'mvtec/hazelnut' to the canonical 'dataset/category' or raise."""
        ...

    def pose(self, category: str) -> Pose | None:
        """How the canonical category's normal parts lie ("free" / "fixed"), None when not declared."""
        ...


@dataclass
class AnomalyMap:
    """The vision expert's evidence for one image.

    ``patch_scores`` is the raw patch grid (rows x cols) of nearest-neighbour distances,
    ``pixel_scores`` the map at image size (height x width) on the same raw scale, ``score`` the
    calibrated image score in [0, 1] (0.5 = edge of normal). ``prior_scores`` is the expert's
    evidence for the reasoner on the same raw scale, at any size: the patch grid smoothed without
    following the image's edges (see :meth:`prior_map`); None means "use ``pixel_scores``".
    An expert may leave ``heatmap_png`` unset and give ``render_heatmap`` instead, so that the PNG
    is encoded only when a caller asks for it (:meth:`heatmap`).
    """

    patch_scores: np.ndarray
    pixel_scores: np.ndarray
    score: float
    raw_score: float
    threshold: float
    regions: list[Region]
    backbone: str
    heatmap_png: bytes | None = None
    prior_scores: np.ndarray | None = None
    render_heatmap: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)
    pose: str | None = None  # the pose the bank used and where it came from, e.g. "free (references)"
    references: int = 0  # how many normal references the bank was built from
    scored_area: str | None = None  # the part of the image the score covers, e.g. "the whole image"
    notes: list[str] = field(default_factory=list)  # why the score was held at 0.5 ("uncertain")
    cautions: list[str] = field(default_factory=list)  # why a normal verdict cannot be trusted ("uncertain")
    description: RegionDescription | None = None  # the regions in words (size, shape, contrast, place)
    render_description: Callable[[], RegionDescription | None] | None = field(
        default=None, repr=False, compare=False
    )

    def heatmap(self) -> bytes | None:
        """The heatmap overlay PNG: ``heatmap_png``, or encoded now by ``render_heatmap`` (once)."""
        if self.heatmap_png is None and self.render_heatmap is not None:
            self.heatmap_png = self.render_heatmap()
        return self.heatmap_png

    def describe(self) -> RegionDescription | None:
        """The regions in words: ``description``, or measured now by ``render_description`` (once)."""
        if self.description is None and self.render_description is not None:
            self.description = self.render_description()
            self.render_description = None
        return self.description

    def prior_map(self) -> np.ndarray:
        """The evidence as a [0, 1] prior for the reasoner and patch injection: 0.5 at the image threshold.

        From ``prior_scores`` when the expert gave one: the pixel map's edge-aware upsampling places
        its peak less reliably than the Gaussian-smoothed grid (measured in ``docs/results.md``), and
        the reasoner reads peaks and places, not pixel-exact outlines.
        """
        values = self.pixel_scores if self.prior_scores is None else self.prior_scores
        if self.threshold <= 0:
            span = float(values.max() - values.min())
            if span <= 0:
                return np.zeros_like(values, dtype=np.float32)
            return ((values - values.min()) / span).astype(np.float32)
        return np.clip(0.5 * values / self.threshold, 0.0, 1.0).astype(np.float32)


@runtime_checkable
class Expert(Protocol):
    """Few-shot anomaly maps from normal references (PatchCore-style)."""

    backbone_id: str

    def analyse(
        self,
        image: Image.Image,
        references: Sequence[Image.Image],
        *,
        pose: Pose | None = None,
        pose_source: str = "knowledge",
    ) -> AnomalyMap:
        """Score the image against the references (the reference bank is cached).

        ``pose`` is the product's known pose, or None to infer it; ``pose_source`` says who declared
        it ("knowledge", "registered product"), as the map's ``pose`` label does: "fixed (knowledge)".
        """
        ...


ProgressCallback = Callable[[dict[str, object]], None]


@dataclass(frozen=True)
class ExemplarHint:
    """A registered product's labelled defect exemplars, as the reasoner sees them.

    ``similarity`` is the best exemplar's similarity to the query's strongest region; ``crop`` is that
    exemplar's region cut from its image (hub VLMs get it as an extra image), or None.
    """

    defect_type: str
    similarity: float
    crop: Image.Image | None = None


@dataclass
class ReasoningInput:
    """Everything the latent reasoner needs for one image."""

    image: Image.Image
    question: MultipleChoiceQuestion
    knowledge: list[KnowledgeHit] = field(default_factory=list)
    templates: list[Image.Image] = field(default_factory=list)
    patch_prior: np.ndarray | None = None
    image_score: float | None = None  # the expert's calibrated image score (0.5 = edge of normal)
    category: str | None = None
    latent_steps: int = 10
    latent_tokens: int = 4
    inject_patches: bool = True
    seed: int = 0
    exemplars: list[ExemplarHint] = field(default_factory=list)  # most similar first
    exemplar_type: str | None = None  # the type the exemplars clearly point to, if any
    # the expert's score when its verdict stands on its own (references agree, the query fits them):
    # an answer may not contradict it where it is confident (LatentConfig.follow_confident_verdict)
    settled_score: float | None = None


@dataclass
class ReasoningResult:
    """The decoded answer and the trace of the latent loop."""

    answer: str | None
    text: str
    trace: ReasoningTrace
    timings_ms: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Reasoner(Protocol):
    """Reason-IAD latent reasoning, in-process or behind the HTTP reasoner service."""

    model_id: str

    def reason(self, request: ReasoningInput, progress: ProgressCallback | None = None) -> ReasoningResult:
        """Optimise the latents, inject patches, decode the answer."""
        ...
