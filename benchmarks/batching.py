"""Cross-request batching: throughput of N concurrent requests through one ``ModelWorker``, as JSON.

    python benchmarks/batching.py [--models tiny builtin] [--requests 8] [--steps 4] [--batches 1 4] [--rounds 2]

For each model, the same N requests (different images, seeds) are queued at once on a worker with
``max_batch`` 1 (one request at a time, as before batching) and then 4, alternating for ``--rounds``
rounds (best round kept), side by side in one process; reports requests/s per setting and the
ratio to ``max_batch=1``, whether every answer matched the one-at-a-time run, and the load average.
'tiny' is the random tiny Qwen2-VL; 'builtin' the builtin SmolLM2-based model (``open_vlm``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

from riad_agent.protocols import ReasoningInput, ReasoningResult
from riad_agent.reasoning import LatentReasoner
from riad_agent.reasoning.config import config_for
from riad_agent.schemas import MultipleChoiceQuestion
from riad_agent.serving.worker import ModelWorker

QUESTION = MultipleChoiceQuestion(
    text="Is there any defect in the object?", options={"A": "Yes.", "B": "No.", "C": "Not sure."}
)


def build_requests(count: int, steps: int, size: int) -> list[ReasoningInput]:
    """``count`` requests: noise query and template images, a prior grid, distinct seeds."""
    requests = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        template = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        requests.append(
            ReasoningInput(
                image=image,
                question=QUESTION,
                templates=[template],
                patch_prior=rng.random((size, size)).astype(np.float32),
                latent_steps=steps,
                seed=seed,
            )
        )
    return requests


def load_reasoner(model: str) -> LatentReasoner:
    if model == "tiny":
        from riad_agent.models.tiny import build_tiny_qwen2_vl

        vlm: Any = build_tiny_qwen2_vl(device="cpu")
    else:
        from riad_agent.models.loading import open_vlm

        vlm = open_vlm(model, device="cpu")
    # no early stop: fixed work
    return LatentReasoner(vlm, config_for(vlm, reward_threshold=1.0, plateau_patience=0))


def run_once(
    reasoner: LatentReasoner, requests: list[ReasoningInput], max_batch: int
) -> tuple[float, list[ReasoningResult]]:
    """Seconds to answer all ``requests`` queued at once, and the results."""
    worker = ModelWorker(reasoner, max_queue=len(requests), max_batch=max_batch)
    worker.start()
    worker.wait_ready(60)
    started = time.perf_counter()
    jobs = [worker.submit(request) for request in requests]
    results = [job.future.result(3600) for job in jobs]
    elapsed = time.perf_counter() - started
    worker.close()
    return elapsed, results


def same_answers(a: list[ReasoningResult], b: list[ReasoningResult]) -> bool:
    return all(
        x.answer == y.answer and x.text == y.text and abs(x.trace.final_reward - y.trace.final_reward) < 1e-4
        for x, y in zip(a, b, strict=True)
    )


def bench_model(model: str, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    reasoner = load_reasoner(model)
    load_s = time.perf_counter() - started
    requests = build_requests(args.requests, args.steps, args.size)
    run_once(reasoner, requests[:2], max(args.batches))  # warm-up
    best: dict[int, float] = {}
    results: dict[int, list[ReasoningResult]] = {}
    for _ in range(args.rounds):
        for max_batch in args.batches:  # alternate settings so drifting machine load hits both
            elapsed, results[max_batch] = run_once(reasoner, requests, max_batch)
            best[max_batch] = min(best.get(max_batch, float("inf")), elapsed)
    base = args.batches[0]
    return {
        "model": reasoner.model_id,
        "load_s": round(load_s, 2),
        "requests": args.requests,
        "steps": args.steps,
        "settings": [
            {
                "max_batch": b,
                "seconds": round(best[b], 3),
                "requests_per_s": round(args.requests / best[b], 3),
                "ratio_to_first": round(best[base] / best[b], 3),
                "same_answers_as_first": same_answers(results[base], results[b]),
            }
            for b in args.batches
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["tiny"], help="'tiny', 'builtin' or a model id/path.")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="Image side in pixels.")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {
        "threads": args.threads,
        "load_average_before": os.getloadavg(),
        "models": [bench_model(model, args) for model in args.models],
        "load_average_after": os.getloadavg(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
