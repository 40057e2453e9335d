"""Inputs for the reasoner-service tests (``tests/serving/conftest.py`` puts this folder on the path)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from riad_agent.protocols import ReasoningInput
from riad_agent.schemas import MultipleChoiceQuestion

QUESTION = MultipleChoiceQuestion(
    text="Is there any defect in the object?", options={"A": "Yes.", "B": "No."}
)


def build_input(seed: int = 0, size: int = 48, steps: int = 2, prior: bool = True) -> ReasoningInput:
    """A small reasoning input: noise query, one template, an optional prior grid."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    template = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return ReasoningInput(
        image=image,
        question=QUESTION,
        templates=[template],
        patch_prior=rng.random((size, size)).astype(np.float32) if prior else None,
        latent_steps=steps,
        latent_tokens=2,
        seed=seed,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)
