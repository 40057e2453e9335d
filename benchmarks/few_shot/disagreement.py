"""How far one reference's leave-one-out score stands above the others' (``ExpertConfig.reference_disagreement``).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/few_shot/disagreement.py [--shots 4 8] [--draws 2]

For clean reference sets (generated products, MVTec *train/good* draws) and for the same sets with
their last reference swapped for (a) a part of another product, (b) a defective part of the same
product (a generated defect, or one painted on a train image), prints the largest ratio
held-out score / median of the others' that the expert stored (``bank.calibration["outlier_ratio"]``).
The shipped cut-off must sit above every clean set and below the swapped ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from fewshot import datasets

from riad_agent.expert import ExpertConfig, PatchCoreExpert


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=int, nargs="+", default=[4])
    parser.add_argument("--draws", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)
    expert = PatchCoreExpert(ExpertConfig(heatmap=False, memory_banks=0))
    sets = [
        (name, draw, shots, refs, queries)
        for shots in args.shots
        for name, draw, refs, queries in datasets(shots, args.draws)
        if not name.startswith("trainrot")
    ]
    names = sorted({s[0] for s in sets})
    rows: dict[str, list[float]] = {"clean": [], "other product": [], "defective": []}
    typical_rows: dict[str, list[float]] = {"clean": [], "other product": [], "defective": []}
    for name, draw, shots, refs, queries in sets:
        foreign_name = names[(names.index(name) + 1) % len(names)]
        foreign = next(s[3][0] for s in sets if s[0] == foreign_name)
        defective = next(image for image, label, _ in queries if label)
        for kind, swapped in (
            ("clean", refs),
            ("other product", [*refs[:-1], foreign.resize(refs[0].size)]),
            ("defective", [*refs[:-1], defective]),
        ):
            cal = expert.fit(swapped).calibration
            ratio, typical = cal["outlier_ratio"], cal["typical_outlier_ratio"]
            rows[kind].append(ratio)
            typical_rows[kind].append(typical)
            print(
                f"{name:18s} k={shots} d={draw} {kind:14s} peak ratio {ratio:.2f} mean ratio {typical:.2f}",
                flush=True,
            )
    for label, table in (("peak", rows), ("mean", typical_rows)):
        for kind, values in table.items():
            v = np.array(values)
            print(
                f"{label} {kind:14s} n={v.size} min {v.min():.2f} median {np.median(v):.2f} max {v.max():.2f}"
            )
    for cut in (2.0, 2.5, 3.0):
        print(
            f"cut {cut}: clean flagged {np.mean(np.array(rows['clean']) >= cut):.2f}, other product "
            f"{np.mean(np.array(rows['other product']) >= cut):.2f}, defective {np.mean(np.array(rows['defective']) >= cut):.2f}"
        )


if __name__ == "__main__":
    main()
