"""Leave-one-out defect exemplars for question answering (`riad eval qa`'s "+ exemplars" row).

A registered product's labelled defects reach the reasoner as :class:`~riad_agent.protocols.ExemplarHint`
(issue 18). To measure what they add on a question set without registering anything, each asked
image is typed against ``k`` *other* labelled test images per defect type of its category, in the
source MVTec-layout folder (``test/<type>/<name>.png`` with ``ground_truth/<type>/<name>_mask.png``),
exactly as an inspection's ``type_defect`` node does: the expert's strongest region of the query
(only when the expert found a region and its score is above the uncertain band), its signature
(the defect's cells by the expert's prior map, and its words:
:func:`riad_agent.products.embedding.signature_similarity`) against each exemplar's (its mask's
cells); a type's similarity is its best exemplar's. The exemplars are drawn once per
(image, type) from a seeded generator, so every run asks with the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from riad_agent.eval.typing_eval import expert_signature, labelled_defects, mask_box, mask_signature
from riad_agent.evidence import ExemplarTyping
from riad_agent.explain import UNCERTAIN_BAND
from riad_agent.products import ImageEmbedder
from riad_agent.products.embedding import RegionSignature, signature_similarity
from riad_agent.protocols import AnomalyMap, ExemplarHint


@dataclass(frozen=True)
class _Exemplar:
    key: str
    defect_type: str
    signature: RegionSignature
    image: Path
    box: tuple[int, int, int, int]


class LeaveOneOutExemplars:
    """Typing of asked images by ``k`` other labelled defects per type of their category.

    ``sources`` maps a question set's dataset folder (``MVTec-AD``) to the MVTec-layout folder its
    images were copied from; keys are the question set's image paths (``MVTec-AD/<category>/test/
    <type>/<name>``). Images of other datasets, and categories with fewer than two labelled types,
    get no exemplars.
    """

    def __init__(
        self, sources: dict[str, Path], k: int = 1, embedder: ImageEmbedder | None = None, seed: int = 0
    ):
        if k < 1:
            raise ValueError("k must be at least 1")
        self.sources = sources
        self.k = k
        self.seed = seed
        self._embedder = embedder
        self._categories: dict[tuple[str, str], list[_Exemplar]] = {}

    @property
    def embedder(self) -> ImageEmbedder:
        if self._embedder is None:
            self._embedder = ImageEmbedder()
        return self._embedder

    def _labelled(self, dataset: str, category: str) -> list[_Exemplar]:
        """Every labelled defect of a category with its region signature (computed once)."""
        if (dataset, category) not in self._categories:
            root = self.sources[dataset] / category
            found = []
            for item in labelled_defects(root) if (root / "test").is_dir() else []:
                image = Image.open(item.path).convert("RGB")
                box = mask_box(item.mask)
                signature = mask_signature(self.embedder.features(image), image, item.mask)
                key = f"{dataset}/{category}/test/{item.defect_type}/{item.path.name}"
                found.append(_Exemplar(key, item.defect_type, signature, item.path, box))
            self._categories[(dataset, category)] = found
        return self._categories[(dataset, category)]

    def typing(
        self, key: str, image: Image.Image, anomaly: AnomalyMap
    ) -> tuple[ExemplarTyping, list[ExemplarHint]] | None:
        """The typing of ``image`` (question-set path ``key``) and its hints for the reasoner, or None."""
        parts = key.split("/")
        if len(parts) < 5 or parts[0] not in self.sources or parts[2] != "test":
            return None
        if not anomaly.regions or anomaly.score <= 0.5 - UNCERTAIN_BAND:
            return None  # the type_defect node's rule: no region, or a clearly normal score
        labelled = self._labelled(parts[0], parts[1])
        types = sorted({e.defect_type for e in labelled})
        if len(types) < 2:
            return None
        top = max(anomaly.regions, key=lambda region: region.score)
        box = (top.x0, top.y0, top.x1, top.y1)
        query = expert_signature(
            self.embedder.features(image), image, box, anomaly.pixel_scores, anomaly.prior_map()
        )
        rng = np.random.default_rng([self.seed, *key.encode()])
        matches, best_of = [], []
        for kind in types:
            pool = [e for e in labelled if e.defect_type == kind and e.key != key]
            if not pool:
                continue
            chosen = [pool[i] for i in rng.permutation(len(pool))[: self.k]]
            scored = [(signature_similarity(query, e.signature), e) for e in chosen]
            similarity, best = max(scored, key=lambda pair: pair[0])
            matches.append((kind, similarity))
            best_of.append(best)
        typing = ExemplarTyping.of(parts[1], matches, [e.key for e in best_of])
        by_key = {e.key: e for e in best_of}
        hints = []
        for (kind, similarity), exemplar_key in zip(typing.matches, typing.exemplars, strict=True):
            exemplar = by_key[exemplar_key]
            with Image.open(exemplar.image) as opened:
                crop = opened.convert("RGB").crop(exemplar.box)
            hints.append(ExemplarHint(defect_type=kind, similarity=similarity, crop=crop))
        return typing, hints
