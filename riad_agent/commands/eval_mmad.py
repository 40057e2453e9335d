"""``riad eval mmad``: run one configuration over MMAD and score it as MMAD does.

Writes ``<out>/<answers file>.jsonl`` (one line per answered question, resumable) and the matching
``*_accuracy.csv`` with the columns of MMAD's published result files, and prints the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from riad_agent.errors import RiadError

if TYPE_CHECKING:
    from riad_agent.eval.mmad_scoring import MmadScores
    from riad_agent.models.base import VisionLanguageModel
    from riad_agent.protocols import Expert, KnowledgeBase

TINY_MODEL = "tiny"


def _load_model(model: str, device: str, dtype: str) -> VisionLanguageModel:
    if model == TINY_MODEL:
        from riad_agent.models.tiny import build_tiny_qwen2_vl

        return build_tiny_qwen2_vl("qwen2_vl", seed=0)
    from riad_agent.models.loading import open_vlm
    from riad_agent.settings import load_settings

    settings = load_settings()
    return open_vlm(
        model,
        device=device,
        dtype=dtype,
        cache_dir=settings.model_cache_dir,
        max_pixels=settings.vlm_max_pixels,
    )


def _open_knowledge(embedder: str | None, data_dir: Path | None) -> KnowledgeBase:
    from riad_agent.knowledge import open_knowledge_base
    from riad_agent.settings import Settings

    overrides: dict[str, object] = {}
    if embedder is not None:
        overrides["embedder"] = embedder
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return open_knowledge_base(Settings(**overrides))  # type: ignore[arg-type]


def _open_expert() -> Expert:
    from riad_agent.expert import open_expert
    from riad_agent.settings import Settings

    return open_expert(Settings())


def scores_table(scores: MmadScores, title: str) -> Table:
    """The MMAD table for the terminal (percent, one decimal)."""
    from riad_agent.eval.mmad_scoring import COLUMNS

    table = Table(title=title)
    table.add_column("")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for name, row in scores.rows.items():
        table.add_row(name, *("-" if row[c] is None else f"{row[c]:.1f}" for c in COLUMNS))
    return table


def eval_mmad(
    data: Annotated[Path, typer.Option(help="The MMAD folder (holds mmad.json and the images).")],
    model: Annotated[
        str,
        typer.Option(help="'tiny' (random tiny Qwen2-VL, smoke runs), 'builtin', a hub id or a local path."),
    ] = TINY_MODEL,
    shots: Annotated[
        int, typer.Option(min=0, max=64, help="Normal templates shown (first similar ones).")
    ] = 1,
    knowledge: Annotated[bool, typer.Option(help="Add the product's retrieved knowledge.")] = False,
    latent: Annotated[bool, typer.Option(help="Latent reasoning (off: T=0, no injection).")] = True,
    steps: Annotated[int, typer.Option(min=1, max=200, help="Latent iterations T when --latent.")] = 10,
    expert: Annotated[bool, typer.Option(help="Guide patch injection with the vision expert's map.")] = False,
    sample: Annotated[int | None, typer.Option(min=1, help="Random questions to ask (default all).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample and of the latent loop.")] = 0,
    rationale_tokens: Annotated[int, typer.Option(min=1, max=512, help="Tokens generated per answer.")] = 24,
    templates: Annotated[str, typer.Option(help="'similar' or 'random' template list.")] = "similar",
    answer_from: Annotated[
        str, typer.Option(help="'response' (MMAD's parse of the text) or 'reasoner' (its own letter).")
    ] = "response",
    embedder: Annotated[str | None, typer.Option(help="Knowledge embedder ('minilm', 'hashing').")] = None,
    kb_data_dir: Annotated[
        Path | None, typer.Option(help="Data dir of the embedded knowledge store.")
    ] = None,
    device: Annotated[str, typer.Option(help="'auto', 'cpu', 'cuda'.")] = "auto",
    dtype: Annotated[
        str, typer.Option(help="'auto', 'float32', 'bfloat16', 'float16' or 'int8' (builtin, CPU).")
    ] = "auto",
    out: Annotated[Path, typer.Option(help="Results folder (JSONL answers + accuracy CSV).")] = Path(
        "results/mmad"
    ),
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Evaluate a VLM (with or without latent reasoning and knowledge) on MMAD."""
    console = Console(stderr=True)
    try:
        from riad_agent.errors import InvalidRequestError
        from riad_agent.eval.mmad import (
            MmadRunConfig,
            answers_file_name,
            build_mmad_reasoner,
            run_mmad,
            scores_json,
        )
        from riad_agent.eval.mmad_scoring import write_scores_csv

        if templates not in ("similar", "random"):
            raise InvalidRequestError(f"unknown template list {templates!r}; use 'similar' or 'random'")
        if answer_from not in ("response", "reasoner"):
            raise InvalidRequestError(f"unknown answer source {answer_from!r}; use 'response' or 'reasoner'")
        config = MmadRunConfig(
            answer_from="reasoner" if answer_from == "reasoner" else "response",
            shots=shots,
            templates="random" if templates == "random" else "similar",
            knowledge=knowledge,
            latent=latent,
            latent_steps=steps,
            rationale_tokens=rationale_tokens,
            sample=sample,
            seed=seed,
        )
        with console.status(f"loading {model}"):
            vlm = _load_model(model, device, dtype)
            kb = _open_knowledge(embedder, kb_data_dir) if knowledge else None
            vision_expert = _open_expert() if expert else None
        reasoner = build_mmad_reasoner(vlm, config)
        model_id = "tiny-random-qwen2-vl" if model == TINY_MODEL else model
        stem = answers_file_name(model_id, config)
        answers_path = out / f"{stem}.jsonl"
        with Progress(
            TextColumn("MMAD"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("questions", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            try:
                result = run_mmad(data, reasoner, config, answers_path, kb, vision_expert, progress, model_id)
            finally:
                close = getattr(kb, "close", None)
                if callable(close):
                    close()
        csv_path = write_scores_csv(result.scores, out / f"{stem}_accuracy.csv")
        if json_out:
            typer.echo(scores_json(result))
        else:
            Console().print(scores_table(result.scores, f"{model_id}: {stem}"))
            typer.echo(
                f"answered {result.answered}, skipped {result.skipped} done, scored {result.scores.counted} "
                f"(dropped {result.scores.dropped}); answers {answers_path}; table {csv_path}"
            )
    except RiadError as exc:
        console.print(exc.one_line(), markup=False, highlight=False)
        raise typer.Exit(exc.exit_code) from None
