"""Choose the builtin model's verdict limits on the training split: balanced accuracy per source.

    python scripts/choose_verdict_limit.py --mvtec ../shared/data/mvtec_subset [--elpv-per-class 150]

Runs the vision expert (the training configuration) on every training image against its reference
pool and prints, for each limit on the calibrated image score (``SCORE_LIMIT``) and on the peak of
the prior map (``VERDICT_LIMIT``), the balanced accuracy per source (generated parts, ELPV cells,
MVTec normals - for those, the share called normal) and their mean, MMAD's way of averaging. Held
out images are never read.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np

from riad_agent.training import TrainConfig, expert_for_training, training_images

SCORE_LIMITS = (0.3, 0.35, 0.38, 0.4, 0.42, 0.44, 0.5, 0.55, 0.6)
PEAK_LIMITS = (0.4, 0.42, 0.44, 0.46, 0.5, 0.55)


def source_of(category: str) -> str:
    return category.split("/", 1)[0]


def balanced(labels: np.ndarray, calls: np.ndarray) -> float:
    """Balanced accuracy; plain accuracy when only one class is present (MVTec normals)."""
    if labels.all() or not labels.any():
        return float((calls == labels).mean())
    return float(0.5 * (calls[labels].mean() + (~calls[~labels]).mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mvtec", default=None, help="MVTec AD-layout folder (its train/good images)")
    parser.add_argument("--elpv-per-class", type=int, default=150)
    args = parser.parse_args()
    data = training_images(TrainConfig(mvtec_root=args.mvtec, elpv_per_class=args.elpv_per_class))
    expert = expert_for_training()
    banks = {pool: expert.fit([load() for _, load in refs]) for pool, refs in data.pools.items()}
    rows: dict[str, list[tuple[bool, float, float]]] = defaultdict(list)
    for item in data.images:
        anomaly = expert.analyse_with_bank(item.load(), banks[item.pool])
        rows[source_of(item.label.category)].append(
            (item.label.anomalous, anomaly.score, float(anomaly.prior_map().max()))
        )
    table = []
    for kind, limits, column in (("score", SCORE_LIMITS, 1), ("peak", PEAK_LIMITS, 2)):
        for limit in limits:
            per_source = {}
            for source, values in rows.items():
                labels = np.array([v[0] for v in values])
                calls = np.array([v[column] >= limit for v in values])
                per_source[source] = round(balanced(labels, calls), 4)
            mean = round(float(np.mean(list(per_source.values()))), 4)
            table.append({"rule": f"{kind} >= {limit}", "mean": mean, **per_source})
            print(
                f"{kind} >= {limit:<5} mean {mean:.3f}  "
                + "  ".join(f"{k} {v:.3f}" for k, v in per_source.items())
            )
    print(json.dumps({"images": {k: len(v) for k, v in rows.items()}, "rules": table}))


if __name__ == "__main__":
    main()
