"""The ablation of `riad eval qa`: the same questions under each added component, scored as MMAD does.

Rows, each adding one thing to the one above (the paper's order):

====================  =====================================================================
no expert evidence    the model alone: image features only (evidence channels empty)
base                  + the vision expert's evidence channels (the builtin model's normal input)
+ knowledge           + the category's retrieved knowledge in the prompt
+ latent reasoning    + T latent steps optimising the entropy reward (no injection)
+ visual injection    + query patches spliced after the latents, chosen by attention alone
+ expert prior        + patch choice weighted by the expert's prior (the full method)
====================  =====================================================================
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from pydantic import BaseModel

from riad_agent.eval.mmad import MmadRunConfig, build_mmad_reasoner, run_mmad
from riad_agent.eval.mmad_data import SUBTASKS
from riad_agent.eval.mmad_scoring import MmadScores
from riad_agent.models.base import VisionLanguageModel
from riad_agent.protocols import Expert, KnowledgeBase


class AblationStep(BaseModel):
    """One row: its name, whether the expert runs, and the run configuration."""

    name: str
    slug: str
    use_expert: bool
    config: MmadRunConfig


class AblationRow(BaseModel):
    step: AblationStep
    scores: MmadScores
    answers_path: str
    seconds: float


def ablation_steps(
    steps: int, expert_shots: int, knowledge_k: int = 2, seed: int = 0, sample: int | None = None
) -> list[AblationStep]:
    """The six rows with ``steps`` latent iterations and ``expert_shots`` references for the expert.

    With ``sample`` every row asks (and scores) the same seeded random ``sample`` questions; answers
    already in a row's JSONL are reused, so a full run can later be re-scored on a sample.
    """
    common = {"shots": 0, "expert_shots": expert_shots, "knowledge_k": knowledge_k, "latent_steps": steps,
              "rationale_tokens": 1, "answer_from": "response", "seed": seed, "sample": sample}

    def step(name: str, slug: str, use_expert: bool, **config: object) -> AblationStep:
        return AblationStep(name=name, slug=slug, use_expert=use_expert, config=MmadRunConfig.model_validate({**common, **config}))

    return [
        step("no expert evidence", "no_evidence", False, knowledge=False, latent=False),
        step("base", "base", True, knowledge=False, latent=False),
        step("+ knowledge", "knowledge", True, knowledge=True, latent=False),
        step("+ latent reasoning", "latent", True, knowledge=True, latent=True, inject=False),
        step("+ visual injection", "injection", True, knowledge=True, latent=True, inject=True, prior_weight=0.0),
        step("+ expert prior", "expert_prior", True, knowledge=True, latent=True, inject=True, prior_weight=0.5),
    ]


def run_ablation(
    data_root: Path,
    vlm: VisionLanguageModel,
    steps: list[AblationStep],
    out: Path,
    knowledge: KnowledgeBase,
    expert: Expert,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[AblationRow]:
    """Run every row (resumable: answers go to ``out/<slug>.jsonl``) and collect the scores."""
    rows = []
    for step in steps:
        started = time.perf_counter()
        reasoner = build_mmad_reasoner(vlm, step.config)
        report: Callable[[int, int], None] | None = None
        if progress is not None:
            report = partial(progress, step.name)
        result = run_mmad(
            data_root,
            reasoner,
            step.config,
            out / f"{step.slug}.jsonl",
            knowledge=knowledge if step.config.knowledge else None,
            expert=expert if step.use_expert else None,
            progress=report,
        )
        rows.append(AblationRow(step=step, scores=result.scores, answers_path=result.answers_path,
                                seconds=time.perf_counter() - started))
    return rows


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def ablation_markdown(rows: list[AblationRow]) -> str:
    """The table: overall MMAD average, each subtask (mean over datasets), each dataset's average."""
    datasets = [name for name in rows[0].scores.rows if name != "Average"] if rows else []
    header = ["configuration", "MMAD avg", *SUBTASKS, *(f"{d} avg" for d in datasets)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        average = row.scores.rows["Average"]
        cells = [row.step.name, _cell(average["Average"]), *(_cell(average[s]) for s in SUBTASKS)]
        cells += [_cell(row.scores.rows[d]["Average"]) for d in datasets]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
