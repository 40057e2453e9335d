"""``riad eval qa``: the builtin model's ablation on MMAD-style questions about held-out real images.

Builds (once) an MMAD-layout question set from the test splits of an MVTec AD folder and of ELPV
(``riad_agent/question_sets/sources.py``), then answers it under each ablation row (``riad_agent/eval/qa_ablation.py``)
and prints the table. Answers are JSONL per row: an interrupted run resumes where it stopped.
The headline is MMAD's one-shot protocol (the expert sees the one template the model sees); the
other ``--shots`` counts go beside it, and ``--reverse-options`` measures the option bias.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from riad_agent.errors import RiadError


def eval_qa(
    mvtec: Annotated[
        Path | None, typer.Option(help="MVTec AD-layout folder; its test images are asked about.")
    ] = None,
    elpv: Annotated[int, typer.Option(min=0, help="ELPV test cells per class and type (0 = no ELPV).")] = 20,
    model: Annotated[
        str, typer.Option(help="'builtin', or a hub id / local path of a supported VLM.")
    ] = "builtin",
    steps: Annotated[int, typer.Option(min=1, max=200, help="Latent iterations T in the latent rows.")] = 6,
    rows: Annotated[str | None, typer.Option(help="Comma-separated row slugs to run (default all).")] = None,
    shots: Annotated[
        str,
        typer.Option(
            help="Comma-separated k-shot protocols: the first is the headline (the expert compares with the k "
            "templates the model is shown), the others go beside it."
        ),
    ] = "1,4,50",
    reverse_options: Annotated[
        bool,
        typer.Option(help="Also ask every headline row with the options reversed (option bias columns)."),
    ] = False,
    debias: Annotated[
        str,
        typer.Option(
            help="Answer debiasing: 'dihedral' (every cyclic order of the options and of their reverse), "
            "'cyclic' or 'none'."
        ),
    ] = "dihedral",
    exemplars: Annotated[
        int,
        typer.Option(
            min=1,
            max=16,
            help="The '+ exemplars' row: labelled defects per type (other test images of the category, "
            "leave-one-out, from --mvtec) whose verdict the reasoner is told.",
        ),
    ] = 1,
    out: Annotated[Path, typer.Option(help="Folder for the question set, the answers and the table.")] = Path(
        "results/qa"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the splits, the option order and the latent loop.")] = 0,
    sample: Annotated[
        int | None, typer.Option(min=1, help="Ask every row the same random N questions (default all).")
    ] = None,
    device: Annotated[str, typer.Option(help="'auto', 'cpu', 'cuda'.")] = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Ablation of the method on questions about held-out real defects (MMAD protocol)."""
    console = Console(stderr=True)
    try:
        from riad_agent.errors import InvalidRequestError
        from riad_agent.eval.qa_ablation import ablation_markdown, ablation_steps, run_ablation
        from riad_agent.eval.qa_exemplars import LeaveOneOutExemplars
        from riad_agent.expert import open_expert
        from riad_agent.knowledge import open_knowledge_base
        from riad_agent.models.loading import open_vlm
        from riad_agent.question_sets.mmad_layout import write_mmad_layout
        from riad_agent.question_sets.sources import MVTEC_KEY, LabelledSet, elpv_set, mvtec_set
        from riad_agent.settings import load_settings

        settings = load_settings()
        try:
            shot_counts = tuple(dict.fromkeys(int(k) for k in shots.split(",") if k.strip()))
        except ValueError:
            shot_counts = ()
        if not shot_counts or min(shot_counts) < 1:
            raise InvalidRequestError(
                f"--shots {shots!r}: give whole numbers >= 1 separated by commas, e.g. 1,4,50"
            )
        data_root = out / "questions"
        if not (data_root / "mmad.json").is_file():
            data = LabelledSet()
            if mvtec is not None:
                data.extend(mvtec_set(mvtec, "test"))
            if elpv > 0:
                data.extend(elpv_set("test", elpv, seed=seed))
            if not data.images:
                raise InvalidRequestError("nothing to ask about: give --mvtec and/or --elpv > 0")
            with console.status("writing the question set"):
                counts = write_mmad_layout(data, data_root, seed=seed)
            console.print(
                f"question set: {counts['images']} images, {counts['questions']} questions -> {data_root}"
            )
        if debias not in ("none", "cyclic", "dihedral"):
            raise InvalidRequestError(f"--debias {debias!r}: use 'dihedral', 'cyclic' or 'none'")
        chosen = ablation_steps(
            steps, shot_counts[0], seed=seed, sample=sample, debias=debias, exemplars=exemplars
        )
        if mvtec is None and not rows:  # the exemplars row needs the labelled source folder
            chosen = [s for s in chosen if not s.config.exemplars]
        if rows:
            wanted = [slug.strip() for slug in rows.split(",") if slug.strip()]
            unknown = sorted(set(wanted) - {s.slug for s in chosen})
            if unknown:
                raise InvalidRequestError(
                    f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(s.slug for s in chosen)}"
                )
            chosen = [s for s in chosen if s.slug in wanted]
            if mvtec is None and any(s.config.exemplars for s in chosen):
                raise InvalidRequestError(
                    "the 'exemplars' row needs --mvtec (its labelled defects are the exemplars)"
                )
        with console.status(f"loading {model}, the knowledge base and the expert"):
            vlm = open_vlm(
                model,
                device=device,
                dtype=settings.dtype,
                cache_dir=settings.model_cache_dir,
                max_pixels=settings.vlm_max_pixels,
            )
            knowledge = open_knowledge_base(settings)
            expert = open_expert(settings)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=total)
                bar.update(tasks[name], completed=done, total=total)

            try:
                results = run_ablation(
                    data_root,
                    vlm,
                    chosen,
                    out / "answers" / f"{shot_counts[0]}-shot",
                    knowledge,
                    expert,
                    progress,
                    reverse_options=reverse_options,
                    beside_shots=shot_counts[1:],
                    exemplars=LeaveOneOutExemplars({MVTEC_KEY: mvtec}, exemplars, seed=seed)
                    if mvtec
                    else None,
                )
            finally:
                close = getattr(knowledge, "close", None)
                if callable(close):
                    close()
        table = ablation_markdown(results)
        (out / "ablation.md").write_text(table + "\n", encoding="utf-8")
        (out / "ablation.json").write_text(
            json.dumps([r.model_dump(mode="json") for r in results], indent=1), encoding="utf-8"
        )
        if json_out:
            typer.echo(json.dumps([r.model_dump(mode="json") for r in results], indent=1))
        else:
            typer.echo(table)
            typer.echo(f"answers under {out / 'answers'}; table {out / 'ablation.md'}")
    except RiadError as exc:
        console.print(exc.one_line(), markup=False, highlight=False)
        raise typer.Exit(exc.exit_code) from None
