"""Rewards in fp32 and the optional expert-map reward (outside information)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from support.latent_steps import evaluate
from support.tiny_models import build_tiny_qwen2_vl, noise_image

from riad_agent.protocols import ReasoningInput
from riad_agent.reasoning.config import LatentConfig
from riad_agent.reasoning.latent_loop import _rewards
from riad_agent.reasoning.reasoner import LatentReasoner
from riad_agent.reasoning.reward import map_agreement
from riad_agent.schemas import MultipleChoiceQuestion

torch.set_num_threads(1)
QUESTION = MultipleChoiceQuestion(text="Is there any defect?", options={"A": "Yes.", "B": "No."})


@pytest.fixture(scope="module")
def vlm() -> Any:
    return build_tiny_qwen2_vl("qwen2_vl", seed=3)


def test_map_agreement_pays_for_attention_on_the_prior() -> None:
    prior = torch.tensor([0.2, 0.2, 0.8, 0.2])
    on_defect = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    elsewhere = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert float(map_agreement(on_defect, prior)[0]) == pytest.approx(1.0)
    assert float(map_agreement(elsewhere, prior)[0]) == pytest.approx(0.25)
    assert float(map_agreement(on_defect * 0.01, prior)[0]) == pytest.approx(1.0)  # mass, not scale


def test_rewards_are_fp32_from_bf16_logits(vlm: Any) -> None:
    setup, _ = LatentReasoner(vlm, LatentConfig()).setup(
        ReasoningInput(image=noise_image(48, 48, seed=7), question=QUESTION)
    )
    n = int(setup.latents.shape[0])
    vocab = int(vlm.embedding_matrix().shape[0])
    logits = [
        torch.randn(n + 1, vocab, generator=torch.Generator().manual_seed(i)).bfloat16() for i in range(3)
    ]
    for kind in ("entropy", "option_confidence"):
        rewards, entropies = _rewards(setup, LatentConfig(reward=kind), logits, None)
        assert rewards.dtype == torch.float32 and entropies.dtype == torch.float32


def test_expert_map_reward_differs_from_entropy_and_follows_the_map(vlm: Any) -> None:
    prior = np.zeros((48, 48), dtype=np.float32)
    prior[40:48, 0:8] = 1.0
    request = ReasoningInput(image=noise_image(48, 48, seed=7), question=QUESTION, patch_prior=prior)
    plain = LatentConfig(reward="entropy")
    mapped = LatentConfig(reward="entropy_expert_map", expert_map_weight=0.5)
    setup, _ = LatentReasoner(vlm, mapped).setup(request)
    rows = [(setup.latents, []), (setup.latents * 1.5, [3])]
    with torch.no_grad():
        entropy_rewards, _, _ = evaluate(vlm, setup, plain, rows, attend=False)
        map_rewards, _, attention = evaluate(vlm, setup, mapped, rows, attend=True)
    assert attention is not None
    assert setup.prior is not None
    agreement = map_agreement(attention[None], setup.prior)[0]
    expected = 0.5 * float(entropy_rewards[0]) + 0.5 * float(agreement)
    assert float(map_rewards[0]) == pytest.approx(expected, abs=1e-5)
    # every row gets its own attention: the two rows' agreements differ
    assert float(map_rewards[0] - entropy_rewards[0] / 2) != pytest.approx(
        float(map_rewards[1] - entropy_rewards[1] / 2)
    )
    # without a prior the variant falls back to the paper's reward
    bare, _ = LatentReasoner(vlm, mapped).setup(
        ReasoningInput(image=noise_image(48, 48, seed=7), question=QUESTION)
    )
    with torch.no_grad():
        fallback, _, _ = evaluate(vlm, bare, mapped, [(bare.latents, [])], attend=False)
        reference, _, _ = evaluate(vlm, bare, plain, [(bare.latents, [])], attend=False)
    assert float(fallback[0]) == pytest.approx(float(reference[0]), abs=1e-6)
