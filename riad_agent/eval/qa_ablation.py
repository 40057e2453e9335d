"""The ablation of `riad eval qa`: the same questions under each added component, scored as MMAD does.

Rows, each adding one thing to the one above (the paper's order):

====================  =====================================================================
no expert evidence    the model alone: image features only (evidence channels empty)
base                  + the vision expert's evidence channels (the builtin model's normal input)
+ knowledge           + the category's retrieved knowledge in the prompt
+ latent reasoning    + T latent steps optimising the entropy reward (no injection)
+ visual injection    + query patches spliced after the latents, chosen by attention alone
+ expert prior        + patch choice weighted by the expert's prior
+ confident verdict   + no answer that contradicts a confident expert score (the full method)
+ exemplars           + what labelled defects of the category say of the strongest region
====================  =====================================================================

The rows above "+ confident verdict" let the model contradict a confident expert score (the
shipped default does not: ``LatentConfig.follow_confident_verdict``), so that row shows that rule's
gain with its sign.

Protocol. The headline is MMAD's one-shot protocol: the vision expert compares the query with the one
normal template the model is shown, no more. k-shot figures (the expert with k references, the
model shown the first min(k, 8)) go beside it. Option bias: each row can also be asked with the
options reversed; :func:`option_bias` gives both accuracies and the share of "A" answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from pydantic import BaseModel, Field

from riad_agent.errors import InvalidRequestError
from riad_agent.eval.mmad import (
    MmadAnswer,
    MmadRunConfig,
    MmadRunResult,
    build_mmad_reasoner,
    read_answers,
    run_mmad,
    select_questions,
)
from riad_agent.eval.mmad_data import SUBTASKS, load_mmad
from riad_agent.eval.mmad_scoring import MmadScores
from riad_agent.eval.qa_exemplars import LeaveOneOutExemplars
from riad_agent.models.base import VisionLanguageModel
from riad_agent.protocols import Expert, KnowledgeBase


class AblationStep(BaseModel):
    """One row: its name, whether the expert runs, and the run configuration."""

    name: str
    slug: str
    use_expert: bool
    config: MmadRunConfig


MAX_MODEL_SHOTS = 8
"""Templates the model is shown at most in a k-shot row (the expert gets all k)."""


class OptionBias(BaseModel):
    """How an answer set leans on the option's place (percentages over the scored answers)."""

    answers: int
    accuracy: float = Field(description="Plain accuracy over every question asked.")
    share_a: float = Field(description="Share of answers that are 'A'.")
    share_a_correct: float = Field(description="Share of questions whose correct answer is 'A'.")


class AblationRow(BaseModel):
    step: AblationStep
    scores: MmadScores
    answers_path: str
    seconds: float
    bias: OptionBias | None = None
    reversed_bias: OptionBias | None = Field(
        default=None, description="The same row with the options reversed."
    )
    by_shots: dict[int, MmadScores] = Field(
        default_factory=dict, description="k-shot scores beside the headline."
    )


def option_bias(answers: list[MmadAnswer]) -> OptionBias | None:
    """Accuracy and the share of 'A' answers vs correct 'A's (None without answers)."""
    if not answers:
        return None
    n = len(answers)

    def share(count: int) -> float:
        return 100.0 * count / n

    return OptionBias(
        answers=n,
        accuracy=share(sum(a.gpt_answer == a.correct_answer for a in answers)),
        share_a=share(sum(a.gpt_answer == "A" for a in answers)),
        share_a_correct=share(sum(a.correct_answer == "A" for a in answers)),
    )


def ablation_steps(
    steps: int,
    shots: int = 1,
    knowledge_k: int = 2,
    seed: int = 0,
    sample: int | None = None,
    reverse_options: bool = False,
    debias: str = "dihedral",
    exemplars: int = 1,
) -> list[AblationStep]:
    """The eight rows with ``steps`` latent iterations in the ``shots``-shot protocol.

    The last, "+ exemplars", is the full method told what ``exemplars`` labelled defects per type
    (other test images of the category, leave-one-out) say of the strongest region; it needs
    :class:`~riad_agent.eval.qa_exemplars.LeaveOneOutExemplars` in :func:`run_ablation`.

    The expert compares with the ``shots`` templates and the model is shown the first
    min(shots, 8) of them (MMAD's one-shot protocol: 1 and 1). With ``sample`` every row asks (and
    scores) the same seeded random ``sample`` questions; answers already in a row's JSONL are reused,
    so a full run can later be re-scored on a sample. ``reverse_options`` asks with the options reversed.
    """
    common = {
        "shots": min(shots, MAX_MODEL_SHOTS),
        "expert_shots": shots,
        "knowledge_k": knowledge_k,
        "latent_steps": steps,
        "rationale_tokens": 1,
        "answer_from": "response",
        "seed": seed,
        "sample": sample,
        "reverse_options": reverse_options,
        "debias": debias,
        "follow_verdict": False,
    }

    def step(name: str, slug: str, use_expert: bool, **config: object) -> AblationStep:
        return AblationStep(
            name=name,
            slug=slug,
            use_expert=use_expert,
            config=MmadRunConfig.model_validate({**common, **config}),
        )

    method = {"knowledge": True, "latent": True, "inject": True}  # every component up to the injection
    return [
        step("no expert evidence", "no_evidence", False, knowledge=False, latent=False),
        step("base", "base", True, knowledge=False, latent=False),
        step("+ knowledge", "knowledge", True, knowledge=True, latent=False),
        step("+ latent reasoning", "latent", True, knowledge=True, latent=True, inject=False),
        step("+ visual injection", "injection", True, **method, prior_weight=0.0),
        step("+ expert prior", "expert_prior", True, **method, prior_weight=0.5),
        step("+ confident verdict", "verdict", True, **method, prior_weight=0.5, follow_verdict=True),
        step(
            "+ exemplars",
            "exemplars",
            True,
            **method,
            prior_weight=0.5,
            follow_verdict=True,
            exemplars=exemplars,
        ),
    ]


def run_ablation(
    data_root: Path,
    vlm: VisionLanguageModel,
    steps: list[AblationStep],
    out: Path,
    knowledge: KnowledgeBase,
    expert: Expert,
    progress: Callable[[str, int, int], None] | None = None,
    reverse_options: bool = False,
    beside_shots: tuple[int, ...] = (),
    exemplars: LeaveOneOutExemplars | None = None,
) -> list[AblationRow]:
    """Run every row (resumable: answers go to ``out/<slug>.jsonl``) and collect the scores.

    ``reverse_options``: each row is asked again with the options reversed (``out/reversed/``) and
    both option biases are recorded; ``beside_shots``: each row again in the k-shot protocol
    (``out/<k>-shot/``), scores in ``by_shots``; ``exemplars``: the leave-one-out exemplar pool of
    the rows that ask with exemplars.
    """
    rows = []
    for step in steps:
        started = time.perf_counter()
        result = _run_step(
            data_root, vlm, step, out / f"{step.slug}.jsonl", knowledge, expert, progress, exemplars=exemplars
        )
        row = AblationRow(
            step=step,
            scores=result.scores,
            answers_path=result.answers_path,
            seconds=0.0,
            bias=option_bias(_selected(result.answers_path, step.config, data_root)),
        )
        if reverse_options:
            flipped = step.model_copy(
                update={"config": step.config.model_copy(update={"reverse_options": True})}
            )
            path = out / "reversed" / f"{step.slug}.jsonl"
            _run_step(data_root, vlm, flipped, path, knowledge, expert, progress, " (reversed)", exemplars)
            row.reversed_bias = option_bias(_selected(str(path), flipped.config, data_root))
        for shots in beside_shots:
            config = step.config.model_copy(
                update={"shots": min(shots, MAX_MODEL_SHOTS), "expert_shots": shots}
            )
            other = step.model_copy(update={"config": config})
            path = out / f"{shots}-shot" / f"{step.slug}.jsonl"
            row.by_shots[shots] = _run_step(
                data_root, vlm, other, path, knowledge, expert, progress, f" ({shots}-shot)", exemplars
            ).scores
        row.seconds = time.perf_counter() - started
        rows.append(row)
    return rows


def _run_step(
    data_root: Path,
    vlm: VisionLanguageModel,
    step: AblationStep,
    path: Path,
    knowledge: KnowledgeBase,
    expert: Expert,
    progress: Callable[[str, int, int], None] | None,
    label: str = "",
    exemplars: LeaveOneOutExemplars | None = None,
) -> MmadRunResult:
    if step.config.exemplars and exemplars is None:
        raise InvalidRequestError(
            f"row {step.slug!r} asks with exemplars: it needs the labelled source folder"
        )
    reasoner = build_mmad_reasoner(vlm, step.config)
    report: Callable[[int, int], None] | None = None
    if progress is not None:
        report = partial(progress, step.name + label)
    return run_mmad(
        data_root,
        reasoner,
        step.config,
        path,
        knowledge=knowledge if step.config.knowledge else None,
        expert=expert if step.use_expert else None,
        progress=report,
        exemplars=exemplars if step.config.exemplars else None,
    )


def _selected(path: str, config: MmadRunConfig, data_root: Path) -> list[MmadAnswer]:
    """The answers of a row's JSONL that its configuration selects."""
    wanted = set(select_questions(load_mmad(data_root), config.sample, config.seed))
    return [a for a in read_answers(Path(path)) if (a.image, a.question_index) in wanted]


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def ablation_markdown(rows: list[AblationRow]) -> str:
    """The table: overall MMAD average, each subtask (mean over datasets), each dataset's average;
    then the k-shot figures and the option bias, when they were measured."""
    datasets = [name for name in rows[0].scores.rows if name != "Average"] if rows else []
    shots = sorted({k for row in rows for k in row.by_shots})
    biased = any(row.reversed_bias is not None for row in rows)
    header = ["configuration", "MMAD avg", *SUBTASKS, *(f"{d} avg" for d in datasets)]
    header += [f"{label} {k}-shot" for k in shots for label in ("MMAD avg", "AD")]
    header += ["acc", "acc reversed", "share A", "A correct"] if biased else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        average = row.scores.rows["Average"]
        cells = [row.step.name, _cell(average["Average"]), *(_cell(average[s]) for s in SUBTASKS)]
        cells += [_cell(row.scores.rows[d]["Average"]) for d in datasets]
        for k in shots:
            other = row.by_shots.get(k)
            cells += [
                _cell(other.rows["Average"]["Average"] if other else None),
                _cell(other.rows["Average"][SUBTASKS[0]] if other else None),
            ]
        if biased:
            bias, flipped = row.bias, row.reversed_bias
            cells += [
                _cell(bias.accuracy if bias else None),
                _cell(flipped.accuracy if flipped else None),
                _cell(bias.share_a if bias else None),
                _cell(bias.share_a_correct if bias else None),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
