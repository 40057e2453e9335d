"""Does the references' alignment statistic depend on their number, and would correcting it help?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/few_shot/alignment_bias.py [--draws 6]

``expert.reference_alignment`` is the per-pixel standard deviation across the references (population
form) over their spatial contrast; above ``alignment_threshold`` (0.6) a fixed-pose bank drops its
position features. A population standard deviation of few samples is biased low, so the statistic
grows with the number of references. Part 1 prints its median over 150 random sets of 2, 3, 4 and 8
images per product; part 2 scores fixed-pose banks of 2 and 4 references with the position features
kept and dropped (tuning data only: generated tile, fabric and bracket, MVTec transistor train with
painted defects), which says whether dropping them more often at few references would help.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling pose_agreement.py
from pose_agreement import generated_product, train_product

from riad_agent.eval.expert_eval import verdict_balanced_accuracy
from riad_agent.eval.expert_metrics import image_auroc
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.expert.expert import reference_alignment


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(2)
    kept = PatchCoreExpert(ExpertConfig(heatmap=False, alignment_threshold=1e6))
    dropped = PatchCoreExpert(ExpertConfig(heatmap=False, alignment_threshold=1e-6))
    products = {
        "gen/tile": generated_product("synthetic/tile", 24),
        "gen/fabric": generated_product("synthetic/fabric", 24),
        "gen/bracket": generated_product("synthetic/bracket", 24),
        "train/transistor": train_product("transistor"),
    }
    rng = np.random.default_rng(3)
    for name, (refs, queries) in products.items():
        medians = []
        for count in (2, 3, 4, 8):
            sets = [rng.choice(len(refs), count, replace=False) for _ in range(150)]
            medians.append(np.median([reference_alignment([refs[int(i)] for i in s]) for s in sets]))
        print(
            f"{name:18s} statistic median at 2 / 3 / 4 / 8 references: "
            + " / ".join(f"{m:.3f}" for m in medians)
        )
        labels = [label for _, label in queries]
        for count in (2, 4):
            rows = []
            for draw in range(args.draws):
                chosen = refs[count * draw : count * draw + count]
                row = []
                for expert in (kept, dropped):
                    bank = expert.fit(chosen, pose="fixed")
                    scores = [expert.analyse_with_bank(image, bank).score for image, _ in queries]
                    row += [image_auroc(labels, scores), verdict_balanced_accuracy(labels, scores)[0]]
                rows.append(row)
            mean = np.mean(rows, axis=0)
            print(
                f"{name:18s} {count} references, fixed pose: positions kept AUROC {mean[0]:.3f} bal.acc "
                f"{mean[1]:.3f} | dropped AUROC {mean[2]:.3f} bal.acc {mean[3]:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
