"""How far must the reasoner's type answer lead before the report may state it as the defect type?

    RIAD_DATA_DIR=/tmp/x python benchmarks/reasoner_type_lead.py [--questions QA_OUT/questions ...] \
        [--seed 31] [--steps 3] [--out /tmp/type-lead]

Writes a generated MVTec-layout set (washer, tile, fabric; ``--seed``) and its MMAD-layout questions
under ``--out``, adds any further question sets given (e.g. a `riad eval qa --out` folder built on
generated data), and answers every Defect Classification question with the full method (knowledge,
latent loop at T = ``--steps``, injection with the expert prior, one template, debiased options).
Prints, for each lead (the chosen option's probability minus the runner-up's), how many answers
reach it and how many of those are right, and the largest lead of a wrong and of a right answer, as
JSON; the answers go to ``--out/answers.jsonl`` (a rerun continues it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from riad_agent.data.synthetic import write_mvtec_layout
from riad_agent.eval.mmad import answer_question, build_mmad_reasoner, load_mmad
from riad_agent.eval.qa_ablation import ablation_steps
from riad_agent.expert import open_expert
from riad_agent.knowledge import open_knowledge_base
from riad_agent.models.loading import open_vlm
from riad_agent.question_sets.mmad_layout import write_mmad_layout
from riad_agent.question_sets.sources import LabelledSet, mvtec_set
from riad_agent.settings import load_settings

LEADS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def _lead(answer: dict[str, object]) -> float:
    probabilities = dict(answer["option_probabilities"])  # type: ignore[call-overload]
    chosen = str(answer["response"])
    return float(probabilities[chosen]) - max(float(p) for k, p in probabilities.items() if k != chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, nargs="*", default=[])
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/type-lead"))
    args = parser.parse_args()
    layout, generated = args.out / f"layout{args.seed}", args.out / f"questions{args.seed}"
    if not layout.exists():
        write_mvtec_layout(
            layout,
            categories=("synthetic/washer", "synthetic/tile", "synthetic/fabric"),
            n_train=4,
            n_test_good=1,
            n_test_per_defect=2,
            seed=args.seed,
        )
    if not (generated / "mmad.json").is_file():
        data = LabelledSet()
        data.extend(mvtec_set(layout, "test"))
        write_mmad_layout(data, generated, seed=0)
    settings = load_settings()
    vlm = open_vlm("builtin", dtype=settings.dtype, cache_dir=settings.model_cache_dir)
    knowledge, expert = open_knowledge_base(settings), open_expert(settings)
    full = next(s for s in ablation_steps(args.steps, 1) if s.slug == "expert_prior")
    reasoner = build_mmad_reasoner(vlm, full.config)
    path = args.out / "answers.jsonl"
    done: dict[tuple[str, str, int], dict[str, object]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            done[(row["root"], row["image"], row["question_index"])] = row
    with path.open("a") as handle:
        for root in [*args.questions, generated]:
            items = load_mmad(root)
            for image, item in items.items():
                for index, question in enumerate(item.conversation):
                    key = (str(root), image, index)
                    if question.type != "Defect Classification" or key in done:
                        continue
                    answer = answer_question(
                        reasoner, root, image, item, index, full.config, knowledge, expert
                    )
                    done[key] = {"root": str(root), **answer.model_dump(mode="json")}
                    handle.write(json.dumps(done[key]) + "\n")
                    handle.flush()
    answers = list(done.values())
    right = [a["response"] == a["correct_answer"] for a in answers]
    leads = [_lead(a) for a in answers]
    table = {
        f"{lead:.1f}": {
            "answers": sum(value >= lead for value in leads),
            "right": sum(ok for ok, value in zip(right, leads, strict=True) if value >= lead),
        }
        for lead in LEADS
    }
    print(
        json.dumps(
            {
                "questions": len(answers),
                "accuracy": round(sum(right) / max(len(answers), 1), 3),
                "by_lead": table,
                "largest_lead_wrong": round(
                    max((v for ok, v in zip(right, leads, strict=True) if not ok), default=0), 3
                ),
                "largest_lead_right": round(
                    max((v for ok, v in zip(right, leads, strict=True) if ok), default=0), 3
                ),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
