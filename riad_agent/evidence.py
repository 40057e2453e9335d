"""One place turns evidence into the reasoner's input, and the expert's map into what a report keeps.

The inspection graph, the MMAD evaluation and the training examples all hand the latent reasoner
the same things: the image, a question, normal templates, knowledge hits and the vision expert's
prior. :func:`reasoning_input` assembles them; :func:`request_reasoning_input` does it for an
:class:`~riad_agent.schemas.InspectionRequest`. :class:`ExpertFindings` is the expert's result
without its pixel arrays: what the report and a checkpoint need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from riad_agent.explain import DEFAULT_QUESTION, UNCERTAIN_BAND
from riad_agent.protocols import AnomalyMap, ExemplarHint, ReasoningInput
from riad_agent.schemas import (
    InspectionRequest,
    KnowledgeHit,
    MultipleChoiceQuestion,
    Region,
    RegionDescription,
)

#: Normal references of a request shown to the reasoner as templates (the expert compares with all).
REQUEST_TEMPLATES = 1


class ExpertEvidence(Protocol):
    """What the reasoner reads of the expert: the calibrated score and the [0, 1] prior map."""

    @property
    def score(self) -> float: ...

    def prior_map(self) -> np.ndarray: ...


#: A defect type is stated from the product's labelled exemplars only when its best exemplar is this much
#: more similar to the region than the runner-up type's (measured: benchmarks/recognition.py typing table).
TYPING_MARGIN = 0.02


class ExemplarTyping(BaseModel):
    """What the product's labelled defect exemplars say of the strongest region.

    ``matches`` are (defect type, best exemplar's similarity), most similar first; ``defect_type`` is
    the first one only when it leads the runner-up by :data:`TYPING_MARGIN` (or is the only type).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    product: str
    matches: list[tuple[str, float]]
    defect_type: str | None
    exemplars: list[str] = Field(default_factory=list)  # the best exemplar's id of each match, same order

    @classmethod
    def of(
        cls, product: str, matches: Sequence[tuple[str, float]], exemplars: Sequence[str] = ()
    ) -> ExemplarTyping:
        """The typing of ``matches`` (with their best exemplars' ids); a type only when the evidence is clear."""
        ids = list(exemplars) if len(exemplars) == len(matches) else []
        order = sorted(range(len(matches)), key=lambda i: -matches[i][1])
        ranked = [matches[i] for i in order]
        clear = bool(ranked) and (len(ranked) == 1 or ranked[0][1] - ranked[1][1] >= TYPING_MARGIN)
        return cls(
            product=product,
            matches=list(ranked),
            defect_type=ranked[0][0] if clear else None,
            exemplars=[ids[i] for i in order] if ids else [],
        )

    def sentence(self) -> str:
        """How the region compares with the labelled exemplars, in words."""
        listed = ", ".join(f"{kind} {similarity:.2f}" for kind, similarity in self.matches)
        if self.defect_type is not None:
            return (
                f"It looks most like the labelled {self.defect_type} exemplars of {self.product} ({listed})."
            )
        return f"The labelled exemplars of {self.product} do not tell its type apart ({listed})."


@dataclass(frozen=True)
class StoredPrior:
    """Expert evidence read back from a store: the score and the prior map :meth:`AnomalyMap.prior_map` gave,
    and the expert's cautions and notes (they keep its score from settling an answer)."""

    score: float
    prior: np.ndarray
    cautions: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def prior_map(self) -> np.ndarray:
        return self.prior


class ExpertFindings(BaseModel):
    """The expert's result without its arrays: score, regions (working-copy pixels), heatmap if asked."""

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    score: float
    raw_score: float
    threshold: float
    regions: list[Region]
    backbone: str
    heatmap_png: bytes | None = None
    pose: str | None = None  # the pose the expert used and its source, e.g. "free (references)"
    references: int = 0  # how many normal references the image was compared with
    scored_area: str | None = None  # the part of the image the score covers, e.g. "the whole image"
    notes: list[str] = Field(default_factory=list)  # why the expert could not judge the image
    cautions: list[str] = Field(default_factory=list)  # why a normal verdict cannot be trusted
    description: RegionDescription | None = None  # the regions in words, when the score is not clearly normal

    @classmethod
    def of(cls, anomaly: AnomalyMap, heatmap: bool) -> ExpertFindings:
        """The findings of ``anomaly``; the heatmap PNG only when ``heatmap`` (encoded now if deferred)."""
        return cls(
            score=anomaly.score,
            raw_score=anomaly.raw_score,
            threshold=anomaly.threshold,
            regions=list(anomaly.regions),
            backbone=anomaly.backbone,
            heatmap_png=anomaly.heatmap() if heatmap else None,
            pose=anomaly.pose,
            references=anomaly.references,
            scored_area=anomaly.scored_area,
            notes=list(anomaly.notes),
            cautions=list(anomaly.cautions),
            # measured (a few ms) only where a report may call the part defective
            description=anomaly.describe() if anomaly.score > 0.5 - UNCERTAIN_BAND else None,
        )


def reasoning_input(
    image: Image.Image,
    question: MultipleChoiceQuestion | None = None,
    *,
    templates: Sequence[Image.Image] = (),
    knowledge: Sequence[KnowledgeHit] = (),
    expert: ExpertEvidence | None = None,
    category: str | None = None,
    latent_steps: int = 10,
    latent_tokens: int = 4,
    inject_patches: bool = True,
    seed: int = 0,
    exemplars: Sequence[ExemplarHint] = (),
    exemplar_type: str | None = None,
) -> ReasoningInput:
    """The reasoner's input from the evidence; no question means the default defect question.

    ``exemplars``: what a registered product's labelled defects say of the strongest region (most
    similar first), and ``exemplar_type`` the type they clearly point to. The expert's score also
    settles what an answer may say (``ReasoningInput.settled_score``) unless the expert gave
    cautions (references that disagree) or notes (a query they cannot judge).
    """
    settled = (
        expert is not None and not getattr(expert, "cautions", None) and not getattr(expert, "notes", None)
    )
    return ReasoningInput(
        image=image,
        question=question or DEFAULT_QUESTION,
        knowledge=list(knowledge),
        templates=list(templates),
        patch_prior=expert.prior_map() if expert is not None else None,
        image_score=expert.score if expert is not None else None,
        category=category,
        latent_steps=latent_steps,
        latent_tokens=latent_tokens,
        inject_patches=inject_patches,
        seed=seed,
        exemplars=list(exemplars),
        exemplar_type=exemplar_type,
        settled_score=expert.score if settled and expert is not None else None,
    )


def request_reasoning_input(
    request: InspectionRequest,
    image: Image.Image,
    references: Sequence[Image.Image],
    knowledge: Sequence[KnowledgeHit],
    expert: ExpertEvidence | None,
    category: str | None,
    typing: ExemplarTyping | None = None,
    crops: Sequence[Image.Image | None] = (),
) -> ReasoningInput:
    """:func:`reasoning_input` for an inspection request: its question, options and first reference.

    ``typing``: the product's exemplar typing, if it ran; ``crops``: its matches' exemplar regions
    (same order; missing ones None).
    """
    options = request.options
    hints = []
    if typing is not None:
        for index, (kind, similarity) in enumerate(typing.matches):
            crop = crops[index] if index < len(crops) else None
            hints.append(ExemplarHint(defect_type=kind, similarity=similarity, crop=crop))
    return reasoning_input(
        image,
        request.question,
        templates=references[:REQUEST_TEMPLATES],
        knowledge=knowledge,
        expert=expert,
        category=category,
        latent_steps=options.latent_steps,
        latent_tokens=options.latent_tokens,
        inject_patches=options.inject_patches,
        seed=options.seed,
        exemplars=hints,
        exemplar_type=typing.defect_type if typing is not None else None,
    )
