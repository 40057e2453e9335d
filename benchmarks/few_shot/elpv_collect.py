"""Collect ELPV grids in ``fewshot.py``'s row format, as a *check* set (never for choosing).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/few_shot/elpv_collect.py --tag NAME \
        [--shots 2 3 4] [--seeds 1 2 3] [--limit 40]

Per kind (mono, poly), shots and seed: references drawn as ``riad eval expert --data elpv --object``
draws them (the first ``shots`` of the seeded normal pool), the first ``limit`` normal test cells and
``limit`` defective ones (probability >= 0.5), each query's raw peak grid and every reference's
leave-one-out grid. The rows go to ``RIAD_FEW_SHOT_CACHE/fewshot-NAME.pkl`` for the offline rules.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling fewshot.py
from fewshot import CACHE, held_out_grids

from riad_agent.expert import ExpertConfig, PatchCoreExpert


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag", required=True)
    parser.add_argument("--shots", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--limit", type=int, default=40)
    args = parser.parse_args()
    from elpv_dataset.utils import load_dataset

    torch.set_num_threads(1)
    images, probabilities, types = load_dataset()
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    rows = []
    for kind in ("mono", "poly"):
        for seed in args.seeds:
            rng = np.random.default_rng(seed)
            of_kind = np.flatnonzero(types == kind)
            normal = rng.permutation(of_kind[probabilities[of_kind] == 0])
            pool, test_normal = normal[: len(normal) // 2], normal[len(normal) // 2 :]
            defective = rng.permutation(of_kind[probabilities[of_kind] >= 0.5])
            tests = [(i, False) for i in test_normal[: args.limit]] + [
                (i, True) for i in defective[: args.limit]
            ]
            for shots in args.shots:
                refs = [Image.fromarray(images[int(i)]).convert("RGB") for i in pool[:shots]]
                bank = expert.fit(refs)
                held = held_out_grids(expert, bank, refs)
                queries = []
                for index, label in tests:
                    result = expert.analyse_with_bank(
                        Image.fromarray(images[int(index)]).convert("RGB"), bank
                    )
                    queries.append(
                        {
                            "label": label,
                            "grid": result.patch_scores,
                            "score": result.score,
                            "raw": result.raw_score,
                        }
                    )
                rows.append(
                    {
                        "name": f"elpv/{kind}",
                        "draw": seed,
                        "shots": shots,
                        "cal": dict(bank.calibration),
                        "meta": dict(bank.meta),
                        "held": held,
                        "queries": queries,
                    }
                )
                scores = np.array([q["score"] for q in queries])
                labels = np.array([q["label"] for q in queries])
                print(
                    f"elpv/{kind} seed={seed} k={shots} pose={bank.meta.get('pose')} "
                    f"normal<.45={np.mean(scores[~labels] <= 0.45):.2f} "
                    f"anom>=.55={np.mean(scores[labels] >= 0.55):.2f}",
                    flush=True,
                )
    with open(CACHE / f"fewshot-{args.tag}.pkl", "wb") as handle:
        pickle.dump(rows, handle)


if __name__ == "__main__":
    main()
