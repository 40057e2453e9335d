"""What debiased answers cost per inspection: decode time with ``debias`` 'dihedral' / 'cyclic' vs 'none', as JSON.

    python benchmarks/debias_cost.py [--model builtin] [--requests 6] [--steps 0 10] [--rounds 3]

The same generated parts (``riad_agent/data/synthetic.py``: a query, one normal template, the expert's
prior and score) are inspected by one reasoner per setting, alternating settings each round (best
round kept per request); reports the mean decode and total milliseconds of each and the difference.
'tiny' is the random tiny Qwen2-VL; 'builtin' the builtin model (``open_vlm``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from typing import Any

import torch

from riad_agent.data.synthetic import generate_sample
from riad_agent.evidence import reasoning_input
from riad_agent.expert.expert import ExpertConfig, PatchCoreExpert
from riad_agent.protocols import ReasoningInput
from riad_agent.reasoning import LatentReasoner
from riad_agent.reasoning.config import config_for
from riad_agent.schemas import MultipleChoiceQuestion

QUESTION = MultipleChoiceQuestion(
    text="Is there any defect in the object?", options={"A": "Yes.", "B": "No.", "C": "Not sure."}
)


def build_requests(count: int, steps: int) -> list[ReasoningInput]:
    """Generated washers (half with a defect), each with one normal template and the expert's evidence."""
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    template = generate_sample("synthetic/washer", None, seed=1000).image
    requests = []
    for seed in range(count):
        sample = generate_sample("synthetic/washer", seed=seed, defect="scratch" if seed % 2 else None)
        anomaly = expert.analyse(sample.image, [template])
        requests.append(
            reasoning_input(
                sample.image, QUESTION, templates=[template], expert=anomaly, latent_steps=steps, seed=seed
            )
        )
    return requests


def measure(vlm: Any, requests: list[ReasoningInput], steps: int, rounds: int) -> dict[str, float]:
    reasoners = {
        mode: LatentReasoner(vlm, config_for(vlm, steps=steps, debias=mode))
        for mode in ("none", "cyclic", "dihedral")
    }
    best: dict[str, list[dict[str, float]]] = {mode: [] for mode in reasoners}
    for reasoner in reasoners.values():  # warm
        reasoner.reason(requests[0])
    for _ in range(rounds):
        for mode, reasoner in reasoners.items():
            timings = [reasoner.reason(r).timings_ms for r in requests]
            if not best[mode]:
                best[mode] = timings
            else:
                best[mode] = [
                    min(a, b, key=lambda t: t["total_ms"]) for a, b in zip(best[mode], timings, strict=True)
                ]
    out: dict[str, float] = {"steps": float(steps)}
    for mode, timings in best.items():
        out[f"decode_ms_{mode}"] = statistics.mean(t["decode_ms"] for t in timings)
        out[f"total_ms_{mode}"] = statistics.mean(t["total_ms"] for t in timings)
    out["added_ms_cyclic"] = out["decode_ms_cyclic"] - out["decode_ms_none"]
    out["added_ms_dihedral"] = out["decode_ms_dihedral"] - out["decode_ms_none"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 10])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    if args.model == "tiny":
        from riad_agent.models.tiny import build_tiny_qwen2_vl

        vlm: Any = build_tiny_qwen2_vl("qwen2_vl")
    else:
        from riad_agent.models.loading import open_vlm

        vlm = open_vlm(args.model, device="cpu")
    rows = []
    for steps in args.steps:
        rows.append(measure(vlm, build_requests(args.requests, steps), steps, args.rounds))
    print(
        json.dumps(
            {"model": vlm.model_id, "requests": args.requests, "load": os.getloadavg(), "rows": rows},
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
