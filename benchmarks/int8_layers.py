"""Which of the builtin model's layers can multiply in int8? Activation outliers, and answers against fp32.

    python benchmarks/int8_layers.py [--variants shipped all bf16] [--steps 2]

First the inputs of every ``nn.Linear`` during one reasoner call (a generated scratched washer):
per layer kind, the worst ratio of a channel's largest magnitude to the median channel's, since one
int8 scale per token cannot hold a channel thousands of times larger than the rest. Then 12 reasoner
calls (6 generated washers, a yes/no and a four-way type question each, the expert's prior from 4
references, T = ``--steps``) in fp32 and in each variant: answers equal to fp32's, the largest and
mean difference of an option probability, the largest difference of the final reward. Variants:
``shipped`` (every linear except the MLP's down projection, :data:`riad_agent.models.int8.SKIP`),
``all`` (the down projection too), ``no-head`` (shipped, LM head in fp32), ``kv-fp32`` (shipped,
k and v projections in fp32: slower in int8 at every size), ``quiet-down`` (k and v in fp32, the
down projection int8 except in layers whose inputs' worst channel is ``LOUD`` x the median) and
``bf16`` (the whole language model in bf16, the precision accepted for CPUs with native bf16, for
scale; slow where bf16 is emulated). Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from typing import Any

import torch
from torch import nn

from riad_agent.data.synthetic import generate_sample
from riad_agent.expert.expert import ExpertConfig, PatchCoreExpert
from riad_agent.models.builtin.loading import load_builtin
from riad_agent.models.int8 import SKIP, DynamicInt8Linear, quantise_linears
from riad_agent.protocols import ReasoningInput
from riad_agent.reasoning import LatentReasoner
from riad_agent.reasoning.config import config_for
from riad_agent.schemas import MultipleChoiceQuestion
from riad_agent.settings import Settings

DETECT = MultipleChoiceQuestion(text="Is there any defect in the object?", options={"A": "Yes.", "B": "No."})
TYPE = MultipleChoiceQuestion(
    text="What type of defect is shown?",
    options={"A": "Crack.", "B": "Scratch.", "C": "Hole.", "D": "Stain."},
)
VARIANTS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "shipped": ("float32", SKIP),
    "all": ("float32", ()),
    "no-head": ("float32", (*SKIP, "lm_head")),
    "kv-fp32": ("float32", (*SKIP, "k_proj", "v_proj")),
    "quiet-down": ("float32", ("k_proj", "v_proj")),  # and the down projections of loud layers
    "bf16": ("bfloat16", None),
}
#: 'quiet-down': a layer's down projection stays fp32 when its inputs' worst channel is this many
#: times the median channel (measured by :func:`activation_outliers` on the first call)
LOUD = 200.0


def _quantise_where(module: nn.Module, keep: Any, prefix: str = "") -> None:
    """Like :func:`quantise_linears`, deciding by the qualified name (``keep(name)``: stays fp32)."""
    for name, child in list(module.named_children()):
        qualified = f"{prefix}.{name}" if prefix else name
        if isinstance(child, nn.Linear):
            if not keep(qualified):
                setattr(module, name, DynamicInt8Linear(child))
        else:
            _quantise_where(child, keep, qualified)


def load(dtype: str, skip: tuple[str, ...] | None, loud: frozenset[str] = frozenset()) -> Any:
    vlm = load_builtin(cache_dir=Settings().model_cache_dir, device="cpu", dtype=dtype)
    if skip is not None:
        if loud:
            _quantise_where(vlm.model, lambda q: q.endswith(skip) or q in loud)
        else:
            quantise_linears(vlm.model, skip)
        vlm.precision = "int8"
    return vlm


def activation_outliers(vlm: Any, request: ReasoningInput, steps: int) -> dict[str, Any]:
    peaks: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Any:
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            magnitude = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).abs().amax(0)
            peaks[name] = torch.maximum(peaks.get(name, magnitude), magnitude)

        return record

    handles = [
        m.register_forward_pre_hook(hook(n)) for n, m in vlm.model.named_modules() if isinstance(m, nn.Linear)
    ]
    LatentReasoner(vlm, config_for(vlm, steps=steps, rationale_tokens=1, plateau_patience=0)).reason(request)
    for handle in handles:
        handle.remove()
    worst: dict[str, tuple[float, str]] = defaultdict(lambda: (0.0, ""))
    down: dict[str, float] = {}
    for name, peak in peaks.items():
        ratio = float(peak.max() / peak.median().clamp_min(1e-12))
        kind = name.rsplit(".", 1)[-1]
        worst[kind] = max(worst[kind], (round(ratio, 1), name))
        if kind == "down_proj":
            down[name] = round(ratio, 1)
    return {"activation_max_over_median": dict(worst), "down_proj_by_layer": down}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["shipped", "all", "bf16"], choices=sorted(VARIANTS))
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    references = [generate_sample("synthetic/washer", None, seed=500 + i).image for i in range(4)]
    cases = []
    for defect, seed in [(None, 81), ("scratch", 82), ("hole", 83), ("crack", 84), ("stain", 85), (None, 86)]:
        image = generate_sample("synthetic/washer", defect, seed=seed).image
        prior = expert.analyse(image, references).prior_map()
        cases += [
            ReasoningInput(image=image, question=q, patch_prior=prior, seed=seed) for q in (DETECT, TYPE)
        ]
    config = {"steps": args.steps, "rationale_tokens": 1, "reward_threshold": 1.0, "plateau_patience": 0}

    def answer(vlm: Any) -> tuple[list[Any], float]:
        reasoner = LatentReasoner(vlm, config_for(vlm, **config))
        started = time.perf_counter()
        return [reasoner.reason(case) for case in cases], time.perf_counter() - started

    full = load("float32", None)
    outliers = activation_outliers(full, cases[2], args.steps)
    print(json.dumps(outliers), flush=True)
    loud = frozenset(n for n, r in outliers["down_proj_by_layer"].items() if r >= LOUD)
    reference, seconds = answer(full)
    print(json.dumps({"variant": "float32", "seconds": round(seconds, 1)}), flush=True)
    for name in args.variants:
        results, seconds = answer(load(*VARIANTS[name], loud if name == "quiet-down" else frozenset()))
        diffs = [
            max(
                abs(a.trace.option_probabilities[k] - b.trace.option_probabilities[k])
                for k in a.trace.option_probabilities
            )
            for a, b in zip(reference, results, strict=True)
        ]
        row = {
            "variant": name,
            "same_answers": sum(a.answer == b.answer for a, b in zip(reference, results, strict=True)),
            "of": len(cases),
            "max_probability_difference": round(max(diffs), 3),
            "mean_probability_difference": round(sum(diffs) / len(diffs), 3),
            "max_reward_difference": round(
                max(
                    abs(a.trace.final_reward - b.trace.final_reward)
                    for a, b in zip(reference, results, strict=True)
                ),
                3,
            ),
            "seconds": round(seconds, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
