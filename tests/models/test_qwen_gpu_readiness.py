"""Qwen-VL readiness for real checkpoints: the pixel cap, loading onto the device, the latent init
without a float32 copy of the embedding table, and defect-exemplar crops as extra prompt images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

from riad_agent.models import loading
from riad_agent.models.base import ImageSegment, Segment, TextSegment
from riad_agent.models.tiny import build_tiny_qwen2_vl
from riad_agent.protocols import ExemplarHint, ReasoningInput
from riad_agent.reasoning import LatentReasoner
from riad_agent.reasoning.config import LatentConfig
from riad_agent.reasoning.reasoner import embedding_stats, model_embedding_stats
from riad_agent.schemas import MultipleChoiceQuestion

torch.set_num_threads(1)


def _image(seed: int, side: int = 32) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((side, side, 3)) * 255).astype("uint8"))


def _request(**kw: Any) -> ReasoningInput:
    question = MultipleChoiceQuestion(text="Is there any defect?", options={"A": "Yes.", "B": "No."})
    return ReasoningInput(image=_image(0), question=question, templates=[_image(1)], latent_steps=0, **kw)


def test_max_pixels_caps_the_image_tokens() -> None:
    big = _image(3, side=128)
    free = build_tiny_qwen2_vl("qwen2_5_vl", processor_max_pixels=128 * 128)
    capped = build_tiny_qwen2_vl("qwen2_5_vl", processor_max_pixels=128 * 128, max_pixels=32 * 32)
    segments: list[Segment] = [TextSegment("look: "), ImageSegment(big, role="query"), TextSegment("\nok?")]
    uncapped_span = free.prepare(segments).query_span
    span = capped.prepare(segments).query_span
    assert uncapped_span.rows * uncapped_span.cols == (128 // 8) ** 2  # 4 px patches merged 2 x 2
    assert span.rows * span.cols * 8 * 8 <= 32 * 32
    assert span.rows * span.cols < uncapped_span.rows * uncapped_span.cols


def test_loading_reads_the_weights_onto_the_device_in_the_dtype(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = build_tiny_qwen2_vl("qwen2_vl")
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    tiny.image_processor.save_pretrained(tmp_path)
    model_class, _ = loading._classes("qwen2_vl")
    seen: dict[str, Any] = {}
    original = model_class.from_pretrained.__func__

    def spy(cls: Any, *args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        model = original(cls, *args, **kwargs)

        def no_move(*a: Any, **k: Any) -> Any:
            raise AssertionError("the model was moved after loading")

        model.to = no_move
        return model

    monkeypatch.setattr(model_class, "from_pretrained", classmethod(spy))
    vlm = loading.load_vlm(
        tmp_path, device="cpu", dtype="bfloat16", local_files_only=True, max_pixels=32 * 32
    )
    assert seen["dtype"] == torch.bfloat16 and str(seen["device_map"]) == "cpu"
    assert vlm.dtype == torch.bfloat16 and vlm.max_pixels == 32 * 32  # type: ignore[attr-defined]


class _Float32Sizes(TorchDispatchMode):
    """Records the largest float32 tensor any op produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(value, torch.Tensor) and value.dtype == torch.float32:
                self.largest = max(self.largest, value.numel())
        return out


def test_latent_init_matches_the_old_one_without_a_float32_table() -> None:
    vlm = build_tiny_qwen2_vl("qwen2_vl")
    table = vlm.embedding_matrix()
    old_mean, old_rms = table.float().mean(0), float(table.float().pow(2).mean().sqrt())
    mean, rms = model_embedding_stats(vlm)
    assert torch.allclose(mean, old_mean, atol=1e-6) and rms == pytest.approx(old_rms, rel=1e-6)
    reasoner = LatentReasoner(vlm, LatentConfig())
    assert torch.allclose(reasoner.initial_latents(2)[0], old_mean, atol=1e-6)
    assert model_embedding_stats(vlm)[0] is mean  # computed once per model
    half = table.to(torch.bfloat16)
    with _Float32Sizes() as sizes:
        chunked_mean, chunked_rms = embedding_stats(half, chunk_rows=64)
    assert sizes.largest <= 64 * table.shape[1] < table.numel()
    assert torch.allclose(chunked_mean, half.float().mean(0), atol=1e-5)
    assert chunked_rms == pytest.approx(float(half.float().pow(2).mean().sqrt()), rel=1e-5)


def test_exemplar_crops_become_named_images_and_none_leaves_the_prompt() -> None:
    vlm = build_tiny_qwen2_vl("qwen2_vl")
    reasoner = LatentReasoner(vlm, LatentConfig())
    plain, _ = reasoner._prompt(_request())
    hints = [ExemplarHint("scratch", 0.91, _image(5, 24)), ExemplarHint("crack", 0.8, _image(6, 24))]
    with_crops, _ = reasoner._prompt(_request(exemplars=hints, exemplar_type="scratch"))
    assert len(with_crops.spans) == len(plain.spans) + 2
    text = vlm.tokenizer.decode(with_crops.input_ids[0].tolist())
    assert "Known defect example 1 (scratch)" in text and "Known defect example 2 (crack)" in text
    assert text.index("(crack)") < text.index("Query image")
    # the exemplars' verdict follows the query image as a line, with or without crops
    assert "The type of the defect is scratch (labelled examples: scratch 0.91, crack 0.80)." in text
    assert text.index("Query image") < text.index("The type of the defect") < text.index("Is there")
    no_crop, _ = reasoner._prompt(_request(exemplars=[ExemplarHint("missing_piece", 0.9, None)]))
    assert len(no_crop.spans) == len(plain.spans)
    no_crop_text = vlm.tokenizer.decode(no_crop.input_ids[0].tolist())
    assert "The type of the defect is unclear (labelled examples: missing piece 0.90)." in no_crop_text
    off = LatentReasoner(vlm, LatentConfig(exemplar_images=False))
    no_images, _ = off._prompt(_request(exemplars=hints, exemplar_type="scratch"))
    assert len(no_images.spans) == len(plain.spans)
    nothing, _ = reasoner._prompt(_request())
    assert torch.equal(nothing.input_ids, plain.input_ids)  # no exemplars: the prompt is as before
    result = reasoner.reason(_request(exemplars=hints))
    assert result.answer in {"A", "B"}


@pytest.mark.parametrize("debias", ["dihedral", "none"])
def test_a_type_question_follows_the_exemplars_clear_type(debias: str) -> None:
    vlm = build_tiny_qwen2_vl("qwen2_vl")
    question = MultipleChoiceQuestion(
        text="What is the type of the defect?",
        options={"A": "Scratch.", "B": "Missing piece.", "C": "Crack."},
    )
    hints = [ExemplarHint("missing_piece", 0.93, None), ExemplarHint("crack", 0.85, None)]

    def ask(config: LatentConfig, **kw: Any) -> Any:
        request = ReasoningInput(image=_image(0), question=question, latent_steps=1, **kw)
        return LatentReasoner(vlm, config).reason(request)

    followed = ask(LatentConfig(debias=debias), exemplars=hints, exemplar_type="missing_piece")
    assert followed.answer == "B" and followed.text.startswith("B")
    assert followed.trace.answer_source == "exemplars" and followed.trace.model_answer in {"A", "B", "C"}
    own = ask(
        LatentConfig(debias=debias, follow_exemplars=False), exemplars=hints, exemplar_type="missing_piece"
    )
    assert own.trace.answer_source == "model" and own.trace.model_answer is None
    unclear = ask(LatentConfig(debias=debias), exemplars=hints, exemplar_type=None)
    assert unclear.trace.answer_source == "model"
    unnamed = ask(
        LatentConfig(debias=debias), exemplars=[ExemplarHint("bent", 0.9, None)], exemplar_type="bent"
    )
    assert unnamed.trace.answer_source == "model"  # no option names it: the model decides


def test_the_option_that_names_a_type() -> None:
    from riad_agent.reasoning.prompt import preferred_option

    question = MultipleChoiceQuestion(
        text="What is the type of the defect?",
        options={"A": "Colour defect.", "B": "Missing piece.", "C": "Cut.", "D": "Cut lead."},
    )
    assert preferred_option(question, "missing_piece") == "B"
    assert preferred_option(question, "colour") == "A"  # the option begins with the type's words
    assert preferred_option(question, "cut") == "C"  # an exact match wins over 'Cut lead'
    assert preferred_option(question, "cut_lead") == "D"
    assert preferred_option(question, "crack") is None and preferred_option(question, None) is None
    twice = MultipleChoiceQuestion(text="?", options={"A": "Bent lead.", "B": "Bent pin."})
    assert preferred_option(twice, "bent") is None  # two options name it: the model decides
