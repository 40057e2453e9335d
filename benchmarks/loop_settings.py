"""Does a setting of the latent loop change answers, and what does it save? (plateau stop, perturbations K, ...)

    RIAD_DATA_DIR=/tmp/x python benchmarks/loop_settings.py --questions QA_OUT/questions \
        [--sample 60] [--steps 10] [--variants 0:0 3:0.002 '{"perturbations": 4}'] [--out /tmp/loop-settings]

QA_OUT is a `riad eval qa --out` folder (its MMAD-layout question set; choose on generated layouts,
e.g. `riad eval qa --mvtec GENERATED --elpv 0 ...`). A variant is a JSON object of
:class:`~riad_agent.reasoning.config.LatentConfig` overrides, or the shorthand ``patience:tolerance``
of ``plateau_patience`` / ``plateau_tolerance`` (0:0 is the loop without the plateau stop). Every
variant answers the same seeded sample with the full method (knowledge, latent loop, injection with
the expert prior, one-shot) at T = ``--steps``, one question at a time, the variants alternating
question by question so that all see the same machine. Prints, per variant, the accuracy, the answers
equal to the first variant's, the mean iterations run, the mean gain of the
best reward over the start and the median seconds per answer, as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from riad_agent.eval.mmad import answer_question, build_mmad_reasoner, load_mmad, select_questions
from riad_agent.eval.qa_ablation import ablation_steps
from riad_agent.expert import open_expert
from riad_agent.knowledge import open_knowledge_base
from riad_agent.models.loading import open_vlm
from riad_agent.reasoning import LatentReasoner
from riad_agent.settings import load_settings


def _overrides(text: str) -> dict[str, object]:
    """A variant's LatentConfig overrides: a JSON object, or ``patience:tolerance`` of the plateau stop."""
    if text.lstrip().startswith("{"):
        overrides: dict[str, object] = json.loads(text)
        return overrides
    patience, tolerance = text.split(":")
    return {"plateau_patience": int(patience), "plateau_tolerance": float(tolerance)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--sample", type=int, default=60)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--variants", nargs="+", default=["0:0", "2:0.002", "3:0.002"])
    parser.add_argument("--out", type=Path, default=Path("/tmp/loop-settings"))
    args = parser.parse_args()
    settings = load_settings()
    vlm = open_vlm("builtin", dtype=settings.dtype, cache_dir=settings.model_cache_dir)
    knowledge = open_knowledge_base(settings)
    expert = open_expert(settings)
    full = next(s for s in ablation_steps(args.steps, 1, sample=args.sample) if s.slug == "expert_prior")
    reasoners: dict[str, LatentReasoner] = {}
    iterations: dict[str, list[int]] = {}
    gains: dict[str, list[float]] = {}
    for text in args.variants:
        reasoner = build_mmad_reasoner(vlm, full.config)
        reasoner.config = reasoner.config.model_validate({**reasoner.config.model_dump(), **_overrides(text)})
        reasoners[text] = reasoner
        iterations[text] = []
        gains[text] = []
        original = reasoner.reason

        def counted(*a: object, _original=original, _text=text, **k: object):  # type: ignore[no-untyped-def]
            result = _original(*a, **k)
            iterations[_text].append(len(result.trace.iterations))
            gains[_text].append(result.trace.final_reward - result.trace.initial_reward)
            return result

        reasoner.reason = counted  # type: ignore[method-assign]
    items = load_mmad(args.questions)
    pairs = select_questions(items, args.sample, full.config.seed)
    answers: dict[str, dict[tuple[str, int], dict[str, object]]] = {text: {} for text in reasoners}
    for image, index in pairs:  # every variant answers a question before the next question
        for text, reasoner in reasoners.items():
            answer = answer_question(
                reasoner, args.questions, image, items[image], index, full.config, knowledge, expert
            )
            answers[text][(image, index)] = answer.model_dump(mode="json")
    args.out.mkdir(parents=True, exist_ok=True)
    for number, got in enumerate(answers.values()):
        with (args.out / f"variant{number}.jsonl").open("w") as handle:
            handle.writelines(json.dumps(a) + "\n" for a in got.values())
    base = answers[args.variants[0]]
    report = {}
    for text, got in answers.items():
        keys = [k for k in got if k in base]
        report[text] = {
            "answers": len(keys),
            "accuracy": round(
                100 * sum(got[k]["response"] == got[k]["correct_answer"] for k in keys) / len(keys), 1
            ),
            "same_as_first": sum(got[k]["response"] == base[k]["response"] for k in keys),
            "mean_iterations": round(statistics.mean(iterations[text]), 2) if iterations[text] else None,
            "mean_reward_gain": round(statistics.mean(gains[text]), 4) if gains[text] else None,
            "median_s": round(statistics.median(float(str(got[k]["elapsed_ms"])) for k in keys) / 1000, 3),
        }
    print(
        json.dumps(
            {"steps": args.steps, "sample": args.sample, "at": time.strftime("%F %T"), "variants": report},
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
