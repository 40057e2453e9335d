"""Should the texture setting follow when the references are not aligned? ELPV cells and generated textures.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/few_shot/texture_setting.py [--variants object texture]

The expert at 4 references in four settings: ``object`` (what every inspection uses), ``norm``
(per-image contrast normalisation before the network), ``top20`` (the image score is the mean of the
top 20 patch scores), ``texture`` (both: the setting of ``riad eval expert --data elpv``). Data: ELPV
mono and poly cells (the ``elpv-dataset`` wheel, evaluation only; 60 normal and 60 defective test
cells per type, reference draws of seeds 1 and 2) and generated fabric and tile layouts of seeds 11
and 23 (written under ``--gen``). Prints image AUROC and verdict balanced accuracy per set and the
means.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from riad_agent.data.synthetic import write_mvtec_layout
from riad_agent.eval.expert_eval import evaluate_elpv, evaluate_mvtec
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.expert.features import FeatureConfig

VARIANTS: dict[str, dict[str, Any]] = {
    "object": {},
    "norm": {"features": FeatureConfig(normalise_intensity=True)},
    "top20": {"top_k": 20},
    "texture": {"features": FeatureConfig(normalise_intensity=True), "top_k": 20},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--gen", type=Path, default=Path("/tmp/riad-texture-setting"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    layouts = []
    for seed in (11, 23):
        layout = args.gen / f"tex{seed}"
        if not layout.is_dir():
            write_mvtec_layout(layout, ("synthetic/fabric", "synthetic/tile"), 8, 12, 3, seed=seed)
        layouts.append(layout)
    for name in args.variants:
        expert = PatchCoreExpert(ExpertConfig(heatmap=False, **VARIANTS[name]))
        cells, textures = [], []
        for seed in (1, 2):
            for result in evaluate_elpv(expert, shots=4, seed=seed, limit=60):
                cells.append((result.image_auroc, result.verdict_balanced_accuracy))
                print(
                    name,
                    result.category,
                    seed,
                    round(result.image_auroc, 3),
                    result.verdict_balanced_accuracy,
                )
        for layout in layouts:
            for result in evaluate_mvtec(layout, expert, shots=4, seed=1):
                textures.append((result.image_auroc, result.verdict_balanced_accuracy))
                print(
                    name,
                    layout.name,
                    result.category,
                    round(result.image_auroc, 3),
                    result.verdict_balanced_accuracy,
                )
        c, t = np.array(cells, dtype=float), np.array(textures, dtype=float)
        print(
            f"== {name}: ELPV AUROC {c[:, 0].mean():.3f} balanced accuracy {c[:, 1].mean():.3f} | "
            f"generated textures {t[:, 0].mean():.3f} {t[:, 1].mean():.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
