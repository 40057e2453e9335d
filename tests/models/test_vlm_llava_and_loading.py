"""The LLaVA adapter on a tiny random model, and loading adapters from a local directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from support.tiny_models import build_tiny_llava, build_tiny_qwen2_vl, noise_image

from riad_agent.errors import ModelLoadError
from riad_agent.models.base import ImageSegment, Segment, TextSegment, VisionLanguageModel
from riad_agent.models.llava import LlavaAdapter
from riad_agent.models.loading import load_vlm
from riad_agent.protocols import ReasoningInput
from riad_agent.reasoning import LatentConfig, LatentReasoner
from riad_agent.schemas import MultipleChoiceQuestion

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def llava() -> Any:
    return build_tiny_llava(seed=2)


def test_llava_prompt_cache_and_boxes(llava: Any) -> None:
    assert isinstance(llava, LlavaAdapter) and isinstance(llava, VisionLanguageModel)
    segments: list[Segment] = [
        TextSegment("Template: "),
        ImageSegment(noise_image(32, 32, seed=1), role="template"),
        TextSegment("\nQuery: "),
        ImageSegment(noise_image(64, 32, seed=2), role="query"),
        TextSegment("\nDefect? A. Yes. B. No."),
    ]
    prompt = llava.prepare(segments)
    query = prompt.query_span
    assert (query.rows, query.cols, query.length) == (8, 8, 64)
    assert torch.equal(prompt.inputs_embeds[0, query.start : query.end], query.features)
    assert prompt.next_position == prompt.length
    # a 64x32 image is resized to 64x32 -> centre-cropped to 32x32: columns 16..48 of the original
    assert query.boxes[0] == (16, 0, 20, 4) and query.boxes[-1] == (44, 28, 48, 32)
    prefix = llava.prefix_forward(prompt)
    with torch.no_grad():
        out = llava.model(input_ids=prompt.input_ids, pixel_values=prompt.extras["pixel_values"])
    assert torch.allclose(out.logits[0, -1].float(), prefix.last_logits, atol=1e-4)
    rows = [
        torch.randn(n, llava.hidden_size, generator=torch.Generator().manual_seed(n)) * 0.05 for n in (4, 7)
    ]
    positions = [[0, 3], [1, 6]]
    packed = llava.suffix_forward(prefix, rows, positions, attend_from=[[0, 1], []])
    for row, pos, logits in zip(rows, positions, packed.logits, strict=True):
        assert torch.allclose(logits, llava.full_forward(prompt, row, pos), atol=1e-4)
    assert packed.attention is not None and packed.attention[0].shape == (64,)


def test_llava_reasoner_end_to_end(llava: Any) -> None:
    question = MultipleChoiceQuestion(text="Is there a defect?", options={"A": "Yes.", "B": "No."})
    reasoner = LatentReasoner(
        llava, LatentConfig(patches=2, rationale_tokens=4, reward_threshold=1.0, plateau_patience=0)
    )
    result = reasoner.reason(
        ReasoningInput(
            image=noise_image(32, 32), question=question, templates=[noise_image(32, 32, 5)], latent_steps=3
        )
    )
    assert result.answer in ("A", "B") and len(result.trace.iterations) == 3
    assert result.trace.final_reward >= result.trace.initial_reward


@pytest.mark.parametrize("variant", ["qwen2_5_vl", "qwen3_vl"])
def test_load_vlm_from_a_local_directory(tmp_path: Path, variant: Any) -> None:
    tiny = build_tiny_qwen2_vl(variant, seed=4)
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    tiny.image_processor.save_pretrained(tmp_path)
    loaded = load_vlm(tmp_path, device="cpu", dtype="float32", local_files_only=True)
    segments: list[Segment] = [ImageSegment(noise_image(32, 32), role="query"), TextSegment("Defect?")]
    a = tiny.prefix_forward(tiny.prepare(segments)).last_logits
    b = loaded.prefix_forward(loaded.prepare(segments)).last_logits
    assert loaded.model_id == str(tmp_path) and type(loaded) is type(tiny)
    assert torch.allclose(a, b, atol=1e-5)


def test_load_vlm_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError):
        load_vlm(tmp_path / "missing", device="cpu", local_files_only=True)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelLoadError, match="supported"):
        load_vlm(tmp_path, device="cpu", local_files_only=True)
