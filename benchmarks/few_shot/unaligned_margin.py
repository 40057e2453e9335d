"""A fixed pose whose references are not aligned: score the whole frame (shipped) or all but its edge?

    HF_HUB_OFFLINE=1 python benchmarks/few_shot/unaligned_margin.py [--shots 2 4 8] [--seeds 1 2 3] [--limit 60]

When the references of a fixed pose do not line up (``reference_alignment`` over the threshold), the
expert drops the position features and, as for a texture, scores every cell; with position features,
or a free pose that fills the frame, it leaves the outer ``fixed_margin_cells`` out (the frame's edge
varies most between normal parts). Used as an operator on unseen ELPV mono cells (4 references), two
of four normal cells were flagged by a peak at the cell's cut corner or its left edge. This probe
scores the ELPV sets of ``riad eval expert --data elpv --limit 60`` (mono and poly, per seed and
reference count) once as shipped and once with the margin for every whole-frame bank (the variant
patches ``PatchCoreExpert._scored_cells`` for the run only), and prints image AUROC, verdict balanced
accuracy and the share confidently wrong of each, one JSON line per draw, then the means. ELPV is the
untuned check set, not a tuning set: a change must hold there without being chosen by it.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from riad_agent.eval.expert_eval import evaluate_elpv
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.expert import expert as expert_module

SHIPPED = expert_module.PatchCoreExpert._scored_cells


def margin_everywhere(self: PatchCoreExpert, bank: expert_module.MemoryBank) -> tuple[np.ndarray | None, str]:
    """As shipped, but a bank scored on the whole frame leaves its outer margin out too."""
    inside, words = SHIPPED(self, bank)
    margin = self.config.fixed_margin_cells
    if inside is None and margin > 0 and min(bank.grid) > 2 * margin:
        share = 100.0 * margin / min(bank.grid)
        return expert_module._inner(bank.grid, margin), f"the image less its outer {share:.0f} % on each side"
    return inside, words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--limit", type=int, default=60)
    args = parser.parse_args()
    variants = {"shipped": SHIPPED, "margin": margin_everywhere}
    figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
    for shots in args.shots:
        for seed in args.seeds:
            row: dict[str, dict[str, object]] = {}
            for name, scored_cells in variants.items():
                expert_module.PatchCoreExpert._scored_cells = scored_cells  # type: ignore[method-assign]
                expert = PatchCoreExpert(ExpertConfig(heatmap=False))
                for result in evaluate_elpv(expert, shots=shots, seed=seed, limit=args.limit):
                    balanced = result.verdict_balanced_accuracy or 0.0
                    wrong = result.confidently_wrong or 0.0
                    figures[name].append((result.image_auroc, balanced, wrong))
                    row.setdefault(result.category, {})[name] = {
                        "auroc": round(result.image_auroc, 3),
                        "balanced": round(balanced, 3),
                        "confidently_wrong": round(wrong, 3),
                        "pose": result.pose,
                    }
            expert_module.PatchCoreExpert._scored_cells = SHIPPED  # type: ignore[method-assign]
            print(json.dumps({"shots": shots, "seed": seed, "sets": row}), flush=True)
    means = {name: np.round(np.mean(values, axis=0), 3).tolist() for name, values in figures.items()}
    print(json.dumps({"mean_auroc_balanced_confidently_wrong": means}))


if __name__ == "__main__":
    main()
