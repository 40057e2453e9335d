"""Do the labelled exemplars' words reach the answer? Defect questions asked with and without them.

    python benchmarks/exemplar_qa.py --mvtec LAYOUT --out /tmp/exq [--exemplars 1] [--steps 3]
        [--subtasks "Defect Classification"] [--shots 1]

Writes the question set of ``LAYOUT`` (an MVTec-layout folder with masks; generated data for
choosing, the shared subset to report) under ``--out`` once, then asks only the chosen subtasks'
questions twice with the full method ('+ expert prior' row of `riad eval qa`): without and with
``--exemplars`` leave-one-out exemplars per type (``riad_agent/eval/qa_exemplars.py``). Prints per
subtask the accuracy of each, how often the exemplars stated a type, and how often that type was
right, and how often the answer was that type, as JSON. Answers are not cached: every run asks again.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from riad_agent.eval.mmad import MmadRunConfig, answer_question, build_mmad_reasoner
from riad_agent.eval.mmad_data import load_mmad
from riad_agent.eval.qa_exemplars import LeaveOneOutExemplars
from riad_agent.expert import open_expert
from riad_agent.knowledge import open_knowledge_base
from riad_agent.models.loading import open_vlm
from riad_agent.question_sets.mmad_layout import write_mmad_layout
from riad_agent.question_sets.sources import MVTEC_KEY, mvtec_set
from riad_agent.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mvtec", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--exemplars", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--subtasks", nargs="+", default=["Defect Classification"])
    parser.add_argument("--model", default="builtin")
    args = parser.parse_args()

    root = args.out / "questions"
    if not (root / "mmad.json").is_file():
        write_mmad_layout(mvtec_set(args.mvtec, "test"), root, seed=0)
    items = load_mmad(root)
    settings = load_settings()
    vlm = open_vlm(args.model, device="cpu", dtype=settings.dtype, cache_dir=settings.model_cache_dir)
    knowledge, expert = open_knowledge_base(settings), open_expert(settings)
    pool = LeaveOneOutExemplars({MVTEC_KEY: args.mvtec}, args.exemplars)
    base = {
        "shots": args.shots,
        "knowledge": True,
        "knowledge_k": 2,
        "latent": True,
        "inject": True,
        "latent_steps": args.steps,
        "rationale_tokens": 1,
    }
    configs = {
        "without": MmadRunConfig.model_validate(base),
        "with": MmadRunConfig.model_validate({**base, "exemplars": args.exemplars}),
    }
    tally: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for image, item in sorted(items.items()):
        for index, question in enumerate(item.conversation):
            if question.type not in args.subtasks:
                continue
            row = tally[question.type]
            row["questions"] += 1
            for name, config in configs.items():
                reasoner = build_mmad_reasoner(vlm, config)
                answer = answer_question(reasoner, root, image, item, index, config, knowledge, expert, pool)
                row[f"right_{name}"] += answer.gpt_answer == answer.correct_answer
                if name == "with" and answer.exemplar_type is not None:
                    row["typed"] += 1
                    truth = image.split("/")[3].replace("_", " ").lower()
                    said = answer.exemplar_type.replace("_", " ").lower()
                    row["typed_right"] += said == truth
                    chosen = answer.options.get(answer.gpt_answer or "", "").lower().rstrip(".")
                    row["followed"] += chosen.startswith(said)
    report = {
        subtask: {
            "questions": int(row["questions"]),
            "accuracy_without": round(row["right_without"] / row["questions"], 3),
            "accuracy_with": round(row["right_with"] / row["questions"], 3),
            "typed": int(row["typed"]),
            "typed_right": int(row["typed_right"]),
            "answer_followed_the_type": int(row["followed"]),
        }
        for subtask, row in tally.items()
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
