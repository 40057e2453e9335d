"""Time every stage of one inspection on generated images, with the real parts where they exist.

Image load (``riad_agent.imaging``), knowledge retrieval (the packaged base in embedded Qdrant),
the vision expert, then the reasoner's stages on the configured VLM (the builtin model by default):
prefix forward, latent loop, decode; finally report formatting (``build_report``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from PIL import Image

from riad_agent.explain import DEFAULT_QUESTION, build_report
from riad_agent.imaging import ImagePolicy, load_image
from riad_agent.protocols import Expert, KnowledgeBase, ReasoningInput, ReasoningResult
from riad_agent.reasoning import LatentReasoner
from riad_agent.reasoning.decode import decode_answer
from riad_agent.reasoning.latent_loop import LoopSetup, injected_refs, run_latent_loop
from riad_agent.schemas import InspectionRequest, ReasoningTrace

STAGES: tuple[str, ...] = (
    "image_load",
    "retrieval",
    "expert",
    "prefix_forward",
    "latent_loop",
    "decode",
    "formatting",
)

T = TypeVar("T")

QUERIES = (
    "Is there any defect in the object?",
    "what does a scratch on a washer look like",
    "normal appearance of the washer surface",
    "hole or missing piece near the rim",
)


@dataclass
class StageSamples:
    """Milliseconds per stage, one value per image."""

    samples: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in STAGES})

    def timed(self, stage: str, fn: Callable[[], T]) -> T:
        started = time.perf_counter()
        value = fn()
        self.samples[stage].append((time.perf_counter() - started) * 1000.0)
        return value


def inspect_once(
    path: Path,
    index: int,
    references: list[Image.Image],
    category: str,
    knowledge: KnowledgeBase,
    expert: Expert,
    reasoner: LatentReasoner,
    policy: ImagePolicy,
    samples: StageSamples,
    latent_steps: int,
) -> None:
    """One inspection of ``path``, stage by stage, appending each stage's time to ``samples``."""
    loaded = samples.timed("image_load", lambda: load_image(path, policy))
    image = loaded.image
    hits = samples.timed("retrieval", lambda: knowledge.search(QUERIES[index % len(QUERIES)], category, 4))
    anomaly = samples.timed("expert", lambda: expert.analyse(image, references, category))
    request = ReasoningInput(
        image=image,
        question=DEFAULT_QUESTION,
        knowledge=hits,
        templates=references[:1],
        patch_prior=anomaly.prior_map(),
        image_score=anomaly.score,
        category=category,
        latent_steps=latent_steps,
        seed=index,
    )
    vlm = reasoner.vlm

    def prefix() -> LoopSetup:
        # prepare (processor + vision tower) and the prefix forward are one stage: the prompt's cost
        setup, _ = reasoner.setup(request)
        return setup

    setup = samples.timed("prefix_forward", prefix)
    loop = samples.timed("latent_loop", lambda: run_latent_loop(vlm, setup, reasoner.config))
    best = loop.best
    decoded = samples.timed(
        "decode", lambda: decode_answer(vlm, setup, best, reasoner.config.rationale_tokens)
    )
    result = ReasoningResult(
        answer=decoded.answer,
        text=decoded.text,
        trace=ReasoningTrace(
            model_id=reasoner.model_id,
            reward_kind=reasoner.config.reward,
            latent_tokens=int(setup.latents.shape[0]),
            initial_reward=loop.initial_reward,
            final_reward=best.reward,
            iterations=loop.iterations,
            injected=injected_refs(setup, loop),
            option_probabilities=decoded.probabilities,
            rationale=decoded.text,
        ),
    )
    inspection = InspectionRequest(image=str(path), category=category)
    samples.timed(
        "formatting",
        lambda: build_report(
            request=inspection,
            image_size=image.size,
            working_size=image.size,
            category=category,
            category_guessed=False,
            knowledge=hits,
            anomaly=anomaly,
            reasoning=result,
            asked_default=True,
            degraded=[],
            timings_ms={},
            models={"reasoner": reasoner.model_id},
        ),
    )
