"""GPU check of the latent reasoner on Qwen2.5-VL: agreement, stage times, speed-ups, memory, as JSON.

    python benchmarks/gpu_check.py [--model PATH | --size tiny|7b] [--device auto|cpu|cuda]
                                   [--requests 4] [--steps 10] [--image 448] [--out gpu_check.json]

The model: a Qwen2.5-VL checkpoint folder given with ``--model`` when it exists locally (read with
``load_vlm``, weights straight onto the device), else one built from a config with random weights
(nothing is downloaded): ``--size tiny`` (the tests' tiny model) or ``--size 7b`` (Qwen2.5-VL-7B's
published sizes, built on the device in bf16; needs about 17 GB). It answers at random; the figures
are about speed, memory and agreement, not accuracy.

Measured, on the same ``--requests`` inputs (noise images, a prior map, distinct seeds):
* ``agreement``: ``reason`` one by one vs ``reason_batch`` of all: same answers, largest gap of the
  option probabilities;
* ``stages_ms``: prefix / latent / decode per inspection (mean of the one-by-one runs);
* ``loop_speedup``: one latent iteration's rows (K+1) as one packed forward on the cached prefix vs
  one uncached full forward per row (the naive loop);
* ``inspection_vs_plain``: an inspection (T iterations, injection, debiased decode) vs a plain
  prefix + greedy decode of the same prompt (T = 0, no injection, no debiasing);
* ``debias_ms``: what the debiased decode adds per inspection;
* ``batched``: requests/s one by one vs ``reason_batch``;
* ``peak_memory_mb``: CUDA peak allocated memory (null on the CPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from riad_agent.models.base import VisionLanguageModel
from riad_agent.protocols import ReasoningInput, ReasoningResult
from riad_agent.reasoning import LatentReasoner
from riad_agent.reasoning.config import LatentConfig
from riad_agent.schemas import MultipleChoiceQuestion

QUESTION = MultipleChoiceQuestion(
    text="Is there any defect in the object?",
    options={"A": "Yes.", "B": "No.", "C": "Not sure.", "D": "Unclear."},
)

QWEN25_VL_7B_TEXT = {
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 128000,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    "rms_norm_eps": 1e-6,
}
QWEN25_VL_7B_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "out_hidden_size": 3584,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "in_channels": 3,
}
"""Qwen2.5-VL-7B-Instruct's published sizes (its config.json), for a random model of the same cost."""


def build_random_7b(device: torch.device, max_pixels: int) -> VisionLanguageModel:
    """Qwen2.5-VL-7B's architecture with random bf16 weights, created on ``device`` (no CPU copy)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from riad_agent.models.qwen_vl import QwenVLAdapter
    from riad_agent.models.tiny import SPECIAL_TOKENS, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer(556)
    ids: dict[str, Any] = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS}
    text = {
        **QWEN25_VL_7B_TEXT,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(QWEN25_VL_7B_VISION),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model: Any = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    processor: Any = Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2)
    return QwenVLAdapter(
        model.eval(), tokenizer, processor, model_id="random-qwen2.5-vl-7b", max_pixels=max_pixels
    )


def open_model(model: str | None, size: str, device: torch.device, max_pixels: int) -> VisionLanguageModel:
    """A local checkpoint when ``model`` is an existing folder, else a random model of ``size``."""
    if model and Path(model).is_dir():
        from riad_agent.models.loading import load_vlm

        return load_vlm(model, device=str(device), local_files_only=True, max_pixels=max_pixels)
    if size == "7b":
        return build_random_7b(device, max_pixels)
    from riad_agent.models.tiny import build_tiny_qwen2_vl

    return build_tiny_qwen2_vl("qwen2_5_vl", device=str(device), max_pixels=max_pixels)


def build_requests(count: int, steps: int, side: int) -> list[ReasoningInput]:
    """Noise query and template images, a prior map with one hot spot, distinct seeds."""
    requests = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        image = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        template = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        prior = np.full((16, 16), 0.2, dtype=np.float32)
        prior[rng.integers(0, 14) :, rng.integers(0, 14) :][:3, :3] = 0.9
        requests.append(
            ReasoningInput(
                image=image,
                question=QUESTION,
                templates=[template],
                patch_prior=prior,
                image_score=0.6,
                latent_steps=steps,
                seed=seed,
            )
        )
    return requests


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, work: Any) -> tuple[Any, float]:
    _sync(device)
    started = time.perf_counter()
    out = work()
    _sync(device)
    return out, (time.perf_counter() - started) * 1000.0


def agreement(alone: list[ReasoningResult], batched: list[ReasoningResult | Exception]) -> dict[str, Any]:
    """Same answers one by one and batched; the largest gap of any option probability."""
    same, gap, errors = 0, 0.0, []
    for one, other in zip(alone, batched, strict=True):
        if isinstance(other, Exception):
            errors.append(repr(other))
            continue
        same += one.answer == other.answer
        for letter, p in one.trace.option_probabilities.items():
            gap = max(gap, abs(p - other.trace.option_probabilities.get(letter, float("nan"))))
    return {"requests": len(alone), "same_answer": same, "max_probability_gap": gap, "errors": errors}


def loop_speedup(
    vlm: VisionLanguageModel, reasoner: LatentReasoner, request: ReasoningInput, device: torch.device
) -> dict[str, float]:
    """K+1 rows of one iteration: one packed cached forward vs one uncached full forward per row."""
    from riad_agent.reasoning.latent_loop import build_row

    setup, _ = reasoner.setup(request)
    generator = torch.Generator().manual_seed(0)
    count = reasoner.config.perturbations + 1
    noise = torch.randn((count, *setup.latents.shape), generator=generator).to(setup.latents) * 0.01
    rows = [build_row(setup, setup.latents + e, []) for e in noise]
    positions = [[int(r.shape[0]) - 1] for r in rows]
    with torch.no_grad():
        vlm.suffix_forward(setup.prefix, rows, positions)  # warm
        _, packed = _timed(device, lambda: vlm.suffix_forward(setup.prefix, rows, positions))
        _, naive = _timed(
            device,
            lambda: [
                vlm.full_forward(setup.prefix.prompt, row, pos)
                for row, pos in zip(rows, positions, strict=True)
            ],
        )
    return {
        "rows": float(count),
        "packed_ms": packed,
        "naive_ms": naive,
        "speedup": naive / packed if packed else 0.0,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from riad_agent.models.device import resolve_device

    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    vlm, load_ms = _timed(device, lambda: open_model(args.model, args.size, device, args.max_pixels))
    requests = build_requests(args.requests, args.steps, args.image)
    config = LatentConfig(rationale_tokens=args.rationale_tokens)
    reasoner = LatentReasoner(vlm, config)
    reasoner.reason(requests[0])  # warm
    alone, alone_ms = _timed(device, lambda: [reasoner.reason(r) for r in requests])
    batched, batch_ms = _timed(device, lambda: reasoner.reason_batch(requests))
    plain = LatentReasoner(
        vlm, config.model_copy(update={"steps": 0, "inject_patches": False, "debias": "none"})
    )
    plain.reason(requests[0])
    _, plain_ms = _timed(device, lambda: [plain.reason(r) for r in requests])
    raw = LatentReasoner(vlm, config.model_copy(update={"debias": "none"}))
    raw_results = [raw.reason(r) for r in requests]
    stages = {
        stage: statistics.mean(r.timings_ms.get(stage, 0.0) for r in alone)
        for stage in ("prepare_ms", "prefix_ms", "latent_ms", "decode_ms", "total_ms")
    }
    raw_decode = statistics.mean(r.timings_ms.get("decode_ms", 0.0) for r in raw_results)
    n = len(requests)
    return {
        "model": vlm.model_id,
        "device": str(device),
        "dtype": str(vlm.dtype),
        "requests": n,
        "steps": args.steps,
        "image_side": args.image,
        "max_pixels": args.max_pixels,
        "query_tokens": reasoner.setup(requests[0])[0].prefix.prompt.query_span.length,
        "load_ms": load_ms,
        "agreement": agreement(alone, batched),
        "stages_ms": stages,
        "debias_ms": stages["decode_ms"] - raw_decode,
        "loop_speedup": loop_speedup(vlm, reasoner, requests[0], device),
        "inspection_vs_plain": {
            "inspection_ms": alone_ms / n,
            "plain_ms": plain_ms / n,
            "ratio": alone_ms / plain_ms if plain_ms else 0.0,
        },
        "batched": {
            "one_by_one_per_s": 1000.0 * n / alone_ms,
            "batched_per_s": 1000.0 * n / batch_ms,
            "speedup": alone_ms / batch_ms if batch_ms else 0.0,
        },
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="Local Qwen2.5-VL checkpoint folder (used when it exists)."
    )
    parser.add_argument(
        "--size", choices=("tiny", "7b"), default="tiny", help="Random model without --model."
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--image", type=int, default=448, help="Side of the square test images (px).")
    parser.add_argument("--max-pixels", type=int, default=1280 * 28 * 28)
    parser.add_argument("--rationale-tokens", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    args = parser.parse_args(argv)
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
