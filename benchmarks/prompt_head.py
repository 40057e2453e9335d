"""What keeping the prompt's head saves a reasoned inspection: the builtin's prefix with and without it.

    RIAD_DATA_DIR=/tmp/x python benchmarks/prompt_head.py [--images 10] [--steps 10]

Inspections of one product repeat the text before the query image (the system turn, the
instruction, the knowledge); the builtin adapter keeps that head's KV cache and runs only the rest of
a later prompt (``HFDecoderAdapter.reuses_prompt_head``). Generated washers (half scratched), 4
generated references, one warm `Inspector` with the reasoner on every image; the head is reused or
not image by image, alternating, so both see the same machine. Prints, for each, the median of the
prefix stage and of the whole inspection (ms), the ratio of the medians, and whether the answers
(verdict, score, option probabilities) agreed, as JSON. Then a group's prefixes, as the reasoner
service batches them (``prefix_forward_batch``): 4 of those prompts as one right-padded batch of whole
prompts, or one by one after the kept head (what the builtin now does), alternating, 5 times each.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))  # the sibling default_inspection.py
from default_inspection import write_references

from riad_agent.data.synthetic import generate_sample
from riad_agent.inspector import Inspector
from riad_agent.schemas import InspectionRequest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="riad-head-") as tmp:
        root = Path(tmp)
        references = write_references(root)
        inspector = Inspector()
        vlm: Any = inspector.components.reasoner.get().vlm  # the in-process builtin adapter
        prompts: list[Any] = []
        prefix_forward = vlm.prefix_forward

        def recording(prompt: Any) -> Any:
            prompts.append(prompt)
            return prefix_forward(prompt)

        vlm.prefix_forward = recording

        def inspect(image: str, reuse: bool) -> tuple[float, float, dict[str, Any]]:
            vlm.reuses_prompt_head = reuse  # off: the whole prompt runs; the kept heads stay for the next
            request = InspectionRequest.model_validate(
                {
                    "image": image,
                    "category": "washer",
                    "references": references,
                    "options": {"latent_steps": args.steps, "reasoner_when": "always"},
                }
            )
            started = time.perf_counter()
            report = inspector.inspect(request)
            total = 1000.0 * (time.perf_counter() - started)
            trace = report.trace
            answer = {
                "verdict": report.verdict,
                "score": round(report.anomaly_score, 6),
                "probabilities": trace.option_probabilities if trace is not None else None,
            }
            return report.timings_ms["reasoning.prefix_ms"], total, answer

        warm = root / "warm.png"
        generate_sample("synthetic/washer", None, 699, 256).image.save(warm)
        inspect(str(warm), True)  # warm-up: model, bank, knowledge store, the head
        prefix: dict[bool, list[float]] = {True: [], False: []}
        totals: dict[bool, list[float]] = {True: [], False: []}
        same = 0
        for index in range(args.images):
            path = root / f"part{index}.png"
            generate_sample(
                "synthetic/washer", "scratch" if index % 2 else None, 700 + index, 256
            ).image.save(path)
            answers: dict[bool, dict[str, Any]] = {}
            for reuse in (index % 2 == 0, index % 2 == 1):  # alternate which goes first
                ms, total, answers[reuse] = inspect(str(path), reuse)
                prefix[reuse].append(ms)
                totals[reuse].append(total)
            print(json.dumps({"image": index, "reused": answers[True], "whole": answers[False]}), flush=True)
            same += answers[True]["verdict"] == answers[False]["verdict"] and all(
                abs(answers[True]["probabilities"][k] - answers[False]["probabilities"][k]) < 0.02
                for k in answers[True]["probabilities"] or {}
            )
        result = {
            ("reused" if reuse else "whole prompt"): {
                "prefix_ms_median": round(float(np.median(prefix[reuse])), 1),
                "inspection_ms_median": round(float(np.median(totals[reuse])), 1),
            }
            for reuse in (True, False)
        }
        result["prefix_ratio"] = round(float(np.median(prefix[True]) / np.median(prefix[False])), 3)
        result["inspection_ratio"] = round(float(np.median(totals[True]) / np.median(totals[False])), 3)
        result["answers_agree"] = f"{same} of {args.images}"
        vlm.prefix_forward = prefix_forward
        group = prompts[-4:]
        grouped: dict[bool, list[float]] = {True: [], False: []}
        for repeat in range(5):
            for reuse in (repeat % 2 == 0, repeat % 2 == 1):
                vlm.reuses_prompt_head = reuse
                started = time.perf_counter()
                vlm.prefix_forward_batch(group)
                grouped[reuse].append(1000.0 * (time.perf_counter() - started))
        vlm.reuses_prompt_head = True
        result["group_of_4_prefix_ms_median"] = {
            "one by one, kept head": round(float(np.median(grouped[True])), 1),
            "padded batch of whole prompts": round(float(np.median(grouped[False])), 1),
        }
        result["precision"] = vlm.precision
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
