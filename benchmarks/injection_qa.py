"""The builtin model's QA answers under injection / reward variants (the rows `riad eval qa` lacks).

Every variant answers the same seeded sample of an MMAD-layout question set (as written by
`riad eval qa`, folder ``<out>/questions``) with the expert, knowledge and T latent steps, exactly as
the ablation's "+ expert prior" row does, and only the latent loop's settings differ:

  old-like      'mixed' selection, patches after the latents, no initial patches, no margin, 4 at most
  after         the new selection (prior first, initial prior patches, margin), patches after the latents
  interleaved   the same, patches interleaved with the latents (the new default)
  expert-map    interleaved + the 'entropy_expert_map' reward (outside information)
  confidence    interleaved + the 'option_confidence' reward (the paper's documented variant)
  *-after       the same rewards with the patches after the latents
  no-injection  the latent loop without patches (the ablation's "+ latent reasoning" row)

Prints one line per variant: MMAD average, accuracy over all answers, and the change against
'after' / 'old-like' with its sign. Answers go to ``<answers>/<variant>.jsonl`` (resumable).

    RIAD_DATA_DIR=/tmp/inject/data .venv/bin/python benchmarks/injection_qa.py \
        --questions /tmp/inject/qa/questions --answers /tmp/inject/qa/answers --sample 40 --steps 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

VARIANTS: dict[str, dict[str, object]] = {
    "old-like": {
        "patch_selection": "mixed",
        "patch_layout": "after",
        "initial_patches": "none",
        "accept_margin": 0.0,
        "max_patches": 4,
    },
    "after": {"patch_layout": "after"},
    "interleaved": {"patch_layout": "interleaved"},
    "expert-map": {"patch_layout": "interleaved", "reward": "entropy_expert_map"},
    "confidence": {"patch_layout": "interleaved", "reward": "option_confidence"},
    "expert-map-after": {"patch_layout": "after", "reward": "entropy_expert_map"},
    "confidence-after": {"patch_layout": "after", "reward": "option_confidence"},
    "no-injection": {"inject_patches": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--answers", type=Path, required=True)
    parser.add_argument("--sample", type=int, default=40)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--expert-shots", type=int, default=4)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()

    from riad_agent.eval.mmad import MmadRunConfig, read_answers, run_mmad
    from riad_agent.expert import open_expert
    from riad_agent.knowledge import open_knowledge_base
    from riad_agent.models.loading import open_vlm
    from riad_agent.reasoning.config import config_for
    from riad_agent.reasoning.reasoner import LatentReasoner
    from riad_agent.settings import load_settings

    settings = load_settings()
    vlm = open_vlm("builtin", device="cpu", cache_dir=settings.model_cache_dir)
    knowledge = open_knowledge_base(settings)
    expert = open_expert(settings)
    run = MmadRunConfig(
        shots=0,
        expert_shots=args.expert_shots,
        knowledge=True,
        knowledge_k=2,
        latent=True,
        inject=True,
        prior_weight=0.5,
        latent_steps=args.steps,
        rationale_tokens=1,
        answer_from="response",
        sample=args.sample,
        seed=0,
    )
    results: dict[str, dict[str, float | None]] = {}
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        started = time.perf_counter()
        settings_of_run = {
            "steps": args.steps,
            "inject_patches": True,
            "prior_weight": 0.5,
            "latent_tokens": 4,
            "rationale_tokens": 1,
            **VARIANTS[name],
        }
        config = config_for(vlm, **settings_of_run)

        path = args.answers / f"{name}.jsonl"
        result = run_mmad(
            args.questions, LatentReasoner(vlm, config), run, path, knowledge=knowledge, expert=expert
        )
        answers = read_answers(path)
        correct = sum(a.gpt_answer == a.correct_answer for a in answers)
        results[name] = {
            "mmad_average": result.scores.average,
            "accuracy": 100.0 * correct / len(answers) if answers else None,
            "answers": float(len(answers)),
            "seconds": time.perf_counter() - started,
        }
        print(name, json.dumps(results[name]), flush=True)
    for base in ("after", "old-like"):
        if base not in results:
            continue
        for name, row in results.items():
            if name == base or row["accuracy"] is None or results[base]["accuracy"] is None:
                continue
            delta = float(row["accuracy"]) - float(results[base]["accuracy"] or 0.0)
            mmad = (row["mmad_average"] or 0.0) - (results[base]["mmad_average"] or 0.0)
            print(f"{name} vs {base}: accuracy {delta:+.1f} points, MMAD average {mmad:+.1f}")
    close = getattr(knowledge, "close", None)
    if callable(close):
        close()


if __name__ == "__main__":
    main()
