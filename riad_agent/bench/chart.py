"""The benchmark as one PNG: stage times, triage throughput and goal ratios (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from riad_agent.errors import OutputWriteError

if TYPE_CHECKING:
    from riad_agent.bench.runner import BenchResult


def write_chart(result: BenchResult, path: Path) -> Path:
    """Draw the three panels and save them as PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (stages_ax, triage_ax, goals_ax) = plt.subplots(1, 3, figsize=(15, 4.8))
    names = list(result.stages)
    medians = [result.stages[n].median_ms for n in names]
    p95 = [result.stages[n].p95_ms for n in names]
    positions = list(range(len(names)))
    stages_ax.barh(positions, p95, color="#c7d7ee", label="p95")
    stages_ax.barh(positions, medians, color="#3a6ea5", label="median")
    stages_ax.set_yticks(positions, names)
    stages_ax.invert_yaxis()
    stages_ax.set_xscale("log")
    stages_ax.set_xlabel("ms per image (log)")
    stages_ax.set_title(f"stages over {result.stages[names[0]].n} images ({result.vlm})")
    stages_ax.legend(loc="lower right")

    workers = [t.workers for t in result.triage]
    rates = [t.images_per_s for t in result.triage]
    triage_ax.bar([str(w) for w in workers], rates, color="#5a9e6f")
    triage_ax.set_xlabel("concurrent workers")
    triage_ax.set_ylabel("images / s")
    triage_ax.set_title("batch triage throughput")

    goal_names = list(result.goals)
    ratios = [result.goals[g].ratio for g in goal_names]
    colours = ["#5a9e6f" if result.goals[g].met else "#c0504d" for g in goal_names]
    goals_ax.barh(range(len(goal_names)), ratios, color=colours)
    goals_ax.axvline(1.0, color="black", linewidth=1)
    goals_ax.set_yticks(range(len(goal_names)), goal_names)
    goals_ax.invert_yaxis()
    goals_ax.set_xscale("log")
    goals_ax.set_xlabel("measured / goal (log; green = met)")
    goals_ax.set_title("performance goals")
    figure.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
    except OSError as exc:
        raise OutputWriteError(f"cannot write the chart {path}: {exc}") from exc
    finally:
        plt.close(figure)
    return path
