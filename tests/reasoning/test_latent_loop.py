"""The latent loop: cached reward, improvement, injection, decode with patches, determinism."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from support.latent_steps import evaluate, gradient_step, reinforce_step
from support.tiny_models import build_tiny_qwen2_vl, noise_image

from riad_agent.protocols import ReasoningInput
from riad_agent.reasoning.config import LatentConfig
from riad_agent.reasoning.decode import decode_answer
from riad_agent.reasoning.latent_loop import LoopSetup, State, build_row, row_layout, run_latent_loop
from riad_agent.reasoning.reasoner import LatentReasoner
from riad_agent.reasoning.reward import entropy_reward, option_confidence_reward
from riad_agent.schemas import MultipleChoiceQuestion

torch.set_num_threads(1)
QUESTION = MultipleChoiceQuestion(
    text="Is there any defect?", options={"A": "Yes.", "B": "No.", "C": "Unsure."}
)


@pytest.fixture(scope="module")
def vlm() -> Any:
    return build_tiny_qwen2_vl("qwen2_vl", seed=3)


def _request(**kw: Any) -> ReasoningInput:
    base: dict[str, Any] = {
        "image": noise_image(48, 48, seed=7),
        "question": QUESTION,
        "templates": [noise_image(48, 48, seed=8)],
    }
    base.update(kw)
    return ReasoningInput(**base)


def _setup(vlm: Any, config: LatentConfig, **kw: Any) -> LoopSetup:
    setup, _ = LatentReasoner(vlm, config).setup(_request(**kw))
    return setup


@pytest.mark.parametrize("kind", ["entropy", "option_confidence"])
def test_cached_reward_equals_uncached(vlm: Any, kind: Any) -> None:
    config = LatentConfig(reward=kind)
    setup = _setup(vlm, config)
    z = setup.latents + 0.01 * torch.randn(setup.latents.shape, generator=torch.Generator().manual_seed(0))
    rows = [(z, []), (z, [0, 5, 7]), (z * 1.1, [2])]
    with torch.no_grad():
        cached, _, _ = evaluate(vlm, setup, config, rows, attend=False)
    n = z.shape[0]
    for (latents, patches), value in zip(rows, cached, strict=True):
        row = build_row(setup, latents, patches)
        latent_positions, blocks = row_layout(n, patches, setup.layout)
        logits = vlm.full_forward(
            setup.prefix.prompt, row, [*latent_positions, row.shape[0] - 1], injected=blocks
        )
        if kind == "entropy":
            expected = entropy_reward(logits[None, : n + 1], config.top_k)[0]
        else:
            expected = option_confidence_reward(logits[None, n], setup.option_ids)[0]
        assert abs(float(value) - float(expected)) < 1e-4


def test_injected_row_layout_after(vlm: Any) -> None:
    setup = _setup(vlm, LatentConfig())
    setup.layout = "after"
    span = setup.prefix.prompt.query_span
    row = build_row(setup, setup.latents, [4, 1])
    n_latent, n_answer = setup.latents.shape[0], setup.answer_start.shape[0]
    assert row.shape == (n_latent + 2 + n_answer, vlm.hidden_size)
    assert torch.equal(row[n_latent], span.features[4].float())
    assert torch.equal(row[n_latent + 1], span.features[1].float())
    assert torch.equal(row[-n_answer:], setup.answer_start.float())
    assert row_layout(n_latent, [4, 1], "after") == ([0, 1, 2, 3], [(4, [4, 1])])


def test_injected_row_layout_interleaved(vlm: Any) -> None:
    setup = _setup(vlm, LatentConfig())
    assert setup.layout == "interleaved"
    span = setup.prefix.prompt.query_span
    z = setup.latents + torch.arange(setup.latents.shape[0])[:, None].float()
    row = build_row(setup, z, [4, 1, 7, 2, 9])  # 5 patches over 4 latents: 2, 1, 1, 1
    n_answer = setup.answer_start.shape[0]
    positions, blocks = row_layout(4, [4, 1, 7, 2, 9], "interleaved")
    assert positions == [0, 3, 5, 7] and blocks == [(1, [4, 1]), (4, [7]), (6, [2]), (8, [9])]
    assert row.shape == (4 + 5 + n_answer, vlm.hidden_size)
    for i, at in enumerate(positions):
        assert torch.equal(row[at], z[i])
    for at, indices in blocks:
        assert torch.equal(row[at : at + len(indices)], span.features[indices].float())
    assert torch.equal(row[-n_answer:], setup.answer_start.float())


@pytest.mark.parametrize("optimiser", ["reinforce", "gradient"])
def test_one_iteration_raises_the_reward_on_average(vlm: Any, optimiser: Any) -> None:
    config = LatentConfig(optimiser=optimiser, perturbations=16, sigma=0.2, lr=0.05)
    gains = []
    for seed in range(6):
        setup = _setup(vlm, config, seed=seed, inject_patches=False)
        z0 = setup.latents + 0.3 * setup.embedding_rms * torch.randn(
            setup.latents.shape, generator=torch.Generator().manual_seed(100 + seed)
        )
        state = State(z0, [], float("nan"), float("nan"))
        if optimiser == "reinforce":
            z1, evaluated, _ = reinforce_step(
                vlm, setup, config, state, None, 0, torch.Generator().manual_seed(seed)
            )
        else:
            z1, evaluated, _ = gradient_step(vlm, setup, config, state, None)
        with torch.no_grad():
            after, _, _ = evaluate(vlm, setup, config, [(z1, [])], attend=False)
        gains.append(float(after[0]) - evaluated[0].reward)
    assert float(np.mean(gains)) > 0, gains
    assert sum(g > 0 for g in gains) >= 4, gains


def test_mirrored_perturbations_come_in_opposite_pairs(vlm: Any) -> None:
    config = LatentConfig(perturbations=4, mirrored=True)
    setup = _setup(vlm, config, inject_patches=False)
    state = State(setup.latents.float(), [], float("nan"), float("nan"))
    _, evaluated, _ = reinforce_step(vlm, setup, config, state, None, 0, torch.Generator().manual_seed(0))
    z = evaluated[0].latents
    perturbed = [s.latents - z for s in evaluated[1:5]]
    assert torch.allclose(perturbed[0], -perturbed[2]) and torch.allclose(perturbed[1], -perturbed[3])
    assert not torch.allclose(perturbed[0], perturbed[1])
    with pytest.raises(ValueError, match="must be even"):
        LatentConfig(perturbations=5, mirrored=True)


def test_loop_keeps_best_and_injection_picks_top_scored_patches(vlm: Any) -> None:
    config = LatentConfig(patches=3, injection_rounds=4, prior_weight=0.0)
    setup = _setup(vlm, config)
    result = run_latent_loop(
        vlm, setup, config.model_copy(update={"reward_threshold": 1.0, "plateau_patience": 0})
    )
    assert len(result.iterations) == setup.steps
    assert result.best.reward >= max(it.reward for it in result.iterations) - 1e-9
    assert result.best.reward >= result.initial_reward
    tried = [it for it in result.iterations if it.tried]
    assert tried, "no candidate patch set was tried"
    scores = [p.score for p in tried[0].tried]
    assert len(tried[0].tried) == 3 and scores == sorted(scores, reverse=True)
    # the first candidate is the top-m of the latents' attention at the current state
    with torch.no_grad():
        _, _, attention = evaluate(vlm, setup, config, [(setup.latents, [])], attend=True)
    assert attention is not None
    first = [p.index for p in tried[0].tried]
    assert first == torch.argsort(attention, descending=True)[:3].tolist()


def test_prior_changes_the_injected_patches(vlm: Any) -> None:
    config = LatentConfig(
        patches=2, injection_rounds=1, prior_weight=0.9, reward_threshold=1.0, plateau_patience=0
    )
    setup = _setup(vlm, config, latent_steps=2)
    plain = run_latent_loop(vlm, setup, config)
    span_rows, span_cols = setup.prefix.prompt.query_span.rows, setup.prefix.prompt.query_span.cols
    assert (span_rows, span_cols) == (6, 6)
    prior = np.zeros((48, 48), dtype=np.float32)
    prior[40:48, 0:8] = 1.0  # bottom-left merged cell
    with_prior = run_latent_loop(vlm, _setup(vlm, config, latent_steps=2, patch_prior=prior), config)
    chosen_plain = [p.index for p in plain.iterations[1].tried]
    chosen_prior = [p.index for p in with_prior.iterations[0].kept]  # the row starts with the prior's best
    bottom_left = (span_rows - 1) * span_cols
    assert chosen_prior[0] == bottom_left
    assert chosen_prior != chosen_plain
    ref = with_prior.iterations[0].kept[0]
    assert (ref.row, ref.col, ref.box) == (5, 0, (0, 40, 8, 48))


def test_final_decode_uses_the_kept_patches(vlm: Any) -> None:
    config = LatentConfig(patches=2)
    setup = _setup(vlm, config)
    state = State(setup.latents, [3, 9], 0.0, 0.0)
    seen: list[torch.Tensor] = []
    spliced: list[Any] = []
    original = vlm.generate

    def spy(
        prefix: Any, row: torch.Tensor, max_new_tokens: int, injected: Any = None, should_stop: Any = None
    ) -> Any:
        seen.append(row)
        spliced.append(injected)
        return original(prefix, row, max_new_tokens, injected=injected, should_stop=should_stop)

    vlm.generate = spy
    try:
        decoded = decode_answer(vlm, setup, state, 4)
    finally:
        del vlm.generate
    span = setup.prefix.prompt.query_span
    assert setup.layout == "interleaved"
    assert len(seen) == 1
    blocks = row_layout(int(setup.latents.shape[0]), [3, 9], "interleaved")[1]
    assert blocks == [(1, [3]), (3, [9])]  # z1 P3 z2 P9 z3 z4
    for at, indices in blocks:
        assert torch.equal(seen[0][at : at + len(indices)], span.features[indices].float())
    assert spliced == [blocks]
    assert decoded.answer in ("A", "B", "C")
    assert abs(sum(decoded.probabilities.values()) - 1.0) < 1e-5


def test_same_seed_same_run_other_seed_differs(vlm: Any) -> None:
    reasoner = LatentReasoner(vlm, LatentConfig(reward_threshold=1.0, plateau_patience=0, rationale_tokens=4))
    first = reasoner.reason(_request(latent_steps=4, seed=11))
    second = reasoner.reason(_request(latent_steps=4, seed=11))
    other = reasoner.reason(_request(latent_steps=4, seed=12))
    rewards = [it.reward for it in first.trace.iterations]
    assert rewards == [it.reward for it in second.trace.iterations]
    assert first.trace.kept == second.trace.kept and first.answer == second.answer
    assert first.text == second.text
    assert rewards != [it.reward for it in other.trace.iterations]


def test_injection_can_change_the_reward(vlm: Any) -> None:
    config = LatentConfig()
    setup = _setup(vlm, config)
    rows = [(setup.latents, []), (setup.latents, [0, 1, 2])]
    with torch.no_grad():
        rewards, _, _ = evaluate(vlm, setup, config, rows, attend=False)
    assert float(rewards[0]) != float(rewards[1])
    n = setup.latents.shape[0]
    for layout in ("after", "interleaved"):
        setup.layout = layout
        built = [build_row(setup, z, s) for z, s in rows]
        positions = [
            [*row_layout(n, s, layout)[0], r.shape[0] - 1] for (_, s), r in zip(rows, built, strict=True)
        ]
        with torch.no_grad():
            out = vlm.suffix_forward(setup.prefix, built, positions)
        gaps = [float((out.logits[0][j] - out.logits[1][j]).abs().max()) for j in range(n + 1)]
        assert gaps[0] < 1e-5 and gaps[n] > 1e-3  # the first latent sees no patch; the answer sees them
        if layout == "after":  # patches after every latent: no latent position can see them
            assert max(gaps[:n]) < 1e-5
        else:  # interleaved: the latents after the first patches see them (their attention can move)
            assert min(gaps[1:n]) > 1e-3


def test_plateau_stop_ends_the_loop_once_the_reward_stops_rising(vlm: Any) -> None:
    base = LatentConfig(reward_threshold=1.0, inject_patches=False, plateau_patience=2)
    setup = _setup(vlm, base, latent_steps=8)
    # every gain counts as a plateau: the loop runs patience + 1 iterations
    stalled = run_latent_loop(vlm, setup, base.model_copy(update={"plateau_tolerance": 1.0}))
    assert stalled.stopped == "plateau" and len(stalled.iterations) == 3
    # the best reward never falls, so a zero tolerance never stops it: all T iterations run
    full = run_latent_loop(
        vlm, _setup(vlm, base, latent_steps=8), base.model_copy(update={"plateau_tolerance": 0.0})
    )
    assert full.stopped == "steps" and len(full.iterations) == 8
    # on by default, conservatively
    assert (LatentConfig().plateau_patience, LatentConfig().plateau_tolerance) == (3, 0.002)


def test_plateau_stop_waits_for_pending_patch_candidates(vlm: Any) -> None:
    config = LatentConfig(
        reward_threshold=1.0,
        patches=2,
        injection_rounds=4,
        prior_weight=0.0,
        plateau_patience=1,
        plateau_tolerance=1.0,
    )
    result = run_latent_loop(vlm, _setup(vlm, config, latent_steps=8), config)
    # candidates are proposed after iterations 0-3 and evaluated in 1-4: no stop before all were tried
    assert result.stopped == "plateau"
    assert sum(bool(it.tried) for it in result.iterations) == 4
    assert len(result.iterations) == 5


def test_reasoner_trace_says_why_the_loop_stopped(vlm: Any) -> None:
    config = LatentConfig(
        reward_threshold=1.0, inject_patches=False, plateau_patience=1, plateau_tolerance=1.0
    )
    result = LatentReasoner(vlm, config).reason(_request(latent_steps=6))
    assert result.trace.stopped == "plateau" and len(result.trace.iterations) == 2
