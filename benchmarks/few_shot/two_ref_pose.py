"""Which pose a bank of 2 (or 3) references should take, measured on the tuning sets only.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/few_shot/two_ref_pose.py [--shots 2 3] [--draws 8]

The pose is inferred from the references' orientation agreement (``pose.infer_pose``: resultant
length R >= 0.97 -> fixed). Two references of a free-pose part agree that well by chance (about one
draw in six for a part with a clear orientation), and a free part judged fixed flags its turned
normal parts. For every tuning set and draw of ``fewshot.datasets`` this scores the queries with the
pose forced free and forced fixed, and records R, so that rules (the shipped one, stricter cut-offs
for 2 references, "free below 3 references") are compared offline: image AUROC, verdict balanced
accuracy at the shipped band and the share of confidently wrong answers, mean over the sets.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling fewshot.py
from fewshot import datasets

from riad_agent.eval.expert_eval import confidently_wrong, verdict_balanced_accuracy
from riad_agent.eval.expert_metrics import image_auroc
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.expert.pose import infer_pose


def collect(shots: int, draws: int) -> list[dict[str, object]]:
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    rows = []
    for name, draw, refs, queries in datasets(shots, draws):
        labels = [bool(label) for _, label, _ in queries]
        row: dict[str, object] = {"set": name, "draw": draw, "shots": shots}
        row["resultant"] = infer_pose(refs).resultant
        for pose in ("free", "fixed"):
            bank = expert.fit(refs, pose=pose)
            scores = [expert.analyse_with_bank(image, bank).score for image, _, _ in queries]
            balanced, uncertain = verdict_balanced_accuracy(labels, scores)
            row[pose] = {
                "auroc": image_auroc(labels, scores),
                "bacc": balanced,
                "uncertain": uncertain,
                "wrong": confidently_wrong(labels, scores),
            }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict[str, object]], cutoffs: dict[str, float]) -> None:
    """Mean over sets (each set's mean over draws) of each rule's AUROC / balanced accuracy / wrong."""
    names = sorted({str(r["set"]) for r in rows})
    for rule, cutoff in cutoffs.items():
        per_set = []
        fixed_share = []
        for name in names:
            chosen = []
            for r in rows:
                if r["set"] != name:
                    continue
                pose = "fixed" if float(r["resultant"]) >= cutoff else "free"  # type: ignore[arg-type]
                fixed_share.append(pose == "fixed")
                chosen.append(r[pose])
            per_set.append([np.mean([c[m] for c in chosen]) for m in ("auroc", "bacc", "wrong")])  # type: ignore[index]
        means = np.mean(per_set, axis=0)
        detail = "  ".join(f"{n} {s[1]:.3f}" for n, s in zip(names, per_set, strict=True))
        print(
            f"{rule:18s} AUROC {means[0]:.3f}  bal.acc {means[1]:.3f}  conf.wrong {means[2]:.3f}  "
            f"fixed {np.mean(fixed_share):.2f} | bal.acc {detail}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--rows", type=Path, help="read collected rows (JSON lines) instead of collecting")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.rows:
        rows = [json.loads(line) for line in args.rows.read_text().splitlines() if line.startswith("{")]
    else:
        rows = [row for shots in args.shots for row in collect(shots, args.draws)]
    cutoffs = {
        "always free": 2.0,
        "shipped (0.97)": 0.97,
        "0.99": 0.99,
        "0.995": 0.995,
        "0.999": 0.999,
        "always fixed": -1.0,
    }
    for shots in sorted({int(r["shots"]) for r in rows}):  # type: ignore[call-overload]
        print(f"-- {shots} references")
        table([r for r in rows if r["shots"] == shots], cutoffs)


if __name__ == "__main__":
    main()
