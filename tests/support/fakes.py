"""Fakes of the protocols: small, deterministic, honest implementations for graph and tool tests."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from riad_agent.errors import BackendUnavailableError
from riad_agent.knowledge.categories import resolve_category
from riad_agent.protocols import AnomalyMap, Pose, ProgressCallback, ReasoningInput, ReasoningResult
from riad_agent.schemas import IterationTrace, KnowledgeHit, ReasoningTrace, Region


class FakeKnowledge:
    """Two categories; search returns the category's entries in a fixed order; hazelnut's pose is free."""

    def __init__(self) -> None:
        self.searches: list[tuple[str, str | None]] = []
        self.entries = {
            "mvtec/hazelnut": ["normal", "crack", "hole"],
            "synthetic/washer": ["normal", "scratch", "hole"],
        }
        self.poses: dict[str, Pose] = {"mvtec/hazelnut": "free"}

    def pose(self, category: str) -> Pose | None:
        return self.poses.get(category)

    def categories(self) -> list[str]:
        return sorted(self.entries)

    def resolve_category(self, name: str) -> str:
        return resolve_category(name, self.categories())  # the store's own naming and typo policy

    def search(self, query: str, category: str | None = None, k: int = 4) -> list[KnowledgeHit]:
        self.searches.append((query, category))
        category = category or "synthetic/washer"
        dataset = category.split("/")[0]
        hits = []
        for rank, entry in enumerate(self.entries[category][:k]):
            hits.append(
                KnowledgeHit(
                    id=f"{category}/{entry}",
                    score=1.0 - 0.1 * rank,
                    dataset=dataset,
                    category=category,
                    kind="normal" if entry == "normal" else "defect",
                    defect_type=None if entry == "normal" else entry,
                    title=entry.title(),
                    text=f"{entry} text",
                )
            )
        return hits


class FakeExpert:
    """Per-pixel distance to the mean reference, calibrated by the references' own spread.

    It records the pose it was last given (``last_pose``) and reports it as the real expert does.
    """

    backbone_id = "fake-mean-diff"

    def analyse(
        self,
        image: Image.Image,
        references: Sequence[Image.Image],
        *,
        pose: Pose | None = None,
        pose_source: str = "knowledge",
    ) -> AnomalyMap:
        self.last_pose = pose
        size = image.size
        query = np.asarray(image, dtype=np.float32).mean(axis=2)
        refs = np.stack([np.asarray(r.resize(size), dtype=np.float32).mean(axis=2) for r in references])
        diff = np.abs(query - refs.mean(axis=0))
        raw = float(diff.max())
        score = float(1 / (1 + np.exp(-(raw - 40.0) / 5.0)))
        regions: list[Region] = []
        ys, xs = np.nonzero(diff > 40.0)
        if len(xs):
            regions.append(
                Region(
                    x0=int(xs.min()),
                    y0=int(ys.min()),
                    x1=int(xs.max()) + 1,
                    y1=int(ys.max()) + 1,
                    score=score,
                    area=len(xs),
                )
            )
        return AnomalyMap(
            patch_scores=diff[::8, ::8],
            pixel_scores=diff,
            score=score,
            raw_score=raw,
            threshold=40.0,
            regions=regions,
            backbone=self.backbone_id,
            heatmap_png=b"\x89PNGfake",
            pose=f"{pose} ({pose_source})" if pose else None,
            references=len(references),
        )


class FakeReasoner:
    """Answers with a fixed letter; can be slow or unavailable to exercise the degraded paths."""

    model_id = "fake-reasoner"

    def __init__(self, answer: str = "A", delay_s: float = 0.0, fail: bool = False) -> None:
        self.answer, self.delay_s, self.fail = answer, delay_s, fail
        self.calls: list[ReasoningInput] = []

    def reason(self, request: ReasoningInput, progress: ProgressCallback | None = None) -> ReasoningResult:
        self.calls.append(request)
        if self.fail:
            raise BackendUnavailableError("reasoner service at http://127.0.0.1:9 refused the connection")
        time.sleep(self.delay_s)
        iterations = []
        for step in range(request.latent_steps):
            if progress is not None:
                progress({"iteration": step, "reward": 0.5 + 0.01 * step})
            iterations.append(
                IterationTrace(
                    step=step, reward=0.5 + 0.01 * step, entropy=0.5, sigma=0.1, accepted=True, elapsed_ms=1.0
                )
            )
        letters = list(request.question.options)
        probabilities = {
            letter: (0.8 if letter == self.answer else 0.2 / (len(letters) - 1)) for letter in letters
        }
        trace = ReasoningTrace(
            model_id=self.model_id,
            reward_kind="topk_entropy",
            latent_tokens=request.latent_tokens,
            initial_reward=0.5,
            final_reward=0.5 + 0.01 * max(request.latent_steps - 1, 0),
            iterations=iterations,
            option_probabilities=probabilities,
        )
        return ReasoningResult(
            answer=self.answer, text=f"{self.answer}.", trace=trace, timings_ms={"loop": 1.0}
        )


def part_image(defect: bool, size: tuple[int, int] = (128, 128), seed: int = 0) -> Image.Image:
    """A grey disc on a dark background, with a bright scratch when ``defect``."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, (30, 30, 30))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.ellipse((w * 0.2, h * 0.2, w * 0.8, h * 0.8), fill=(150, 150, 150))
    if defect:
        draw.line((w * 0.3, h * 0.35, w * 0.45, h * 0.4), fill=(255, 255, 255), width=max(2, w // 40))
    noise = rng.integers(-3, 4, size=(h, w, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
