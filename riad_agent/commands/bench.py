"""``riad bench``: every stage of an inspection, triage throughput and the speed goals, as JSON + PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from riad_agent.errors import RiadError

DEFAULT_CHART = Path("docs/bench.png")


def bench(
    ctx: typer.Context,
    images: Annotated[int, typer.Option(min=2, max=1000, help="Generated images timed per stage.")] = 20,
    json_out: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
    chart: Annotated[Path, typer.Option(help="Where the PNG chart goes.")] = DEFAULT_CHART,
    reduced: Annotated[bool, typer.Option(help="A small run that finishes well under a minute (CI).")] = False,
    embedder: Annotated[
        str | None, typer.Option(help="'minilm' or 'hashing' (default: hashing when reduced, else minilm).")
    ] = None,
    steps: Annotated[int, typer.Option(min=1, max=200, help="Latent iterations T.")] = 10,
    threads: Annotated[int, typer.Option(min=1, max=64, help="torch CPU threads.")] = 1,
    vlm: Annotated[
        str | None, typer.Option(help="'builtin' (default), 'tiny' (default when reduced) or a model id.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON here.")] = None,
) -> None:
    """Benchmark the pipeline on generated images; print a summary (or JSON) and draw the chart."""
    if ctx.invoked_subcommand is not None:  # `riad bench latent ...`: this is only the group's callback
        return
    console = Console(stderr=True)
    try:
        from riad_agent.bench.chart import write_chart
        from riad_agent.bench.runner import BenchConfig, run_bench
        from riad_agent.errors import OutputWriteError

        config = BenchConfig(
            images=images, reduced=reduced, embedder=embedder, latent_steps=steps, threads=threads, vlm=vlm
        )
        with console.status("benchmark") as status:
            result = run_bench(config, progress=lambda stage: status.update(f"benchmark: {stage}"))
        write_chart(result, chart)
        text = result.model_dump_json(indent=2)
        if out is not None:
            try:
                out.write_text(text + "\n")
            except OSError as exc:
                raise OutputWriteError(f"cannot write {out}: {exc}") from exc
        if json_out:
            typer.echo(text)
            return
        table = Table(title=f"stages ({result.vlm}, {result.embedder} embedder, {result.expert})")
        for column in ("stage", "median ms", "p95 ms"):
            table.add_column(column, justify="left" if column == "stage" else "right")
        for name, timing in result.stages.items():
            table.add_row(name, f"{timing.median_ms:.1f}", f"{timing.p95_ms:.1f}")
        goals = Table(title="goals (measured / target)")
        for column in ("goal", "measured", "target", "ratio", "met"):
            goals.add_column(column)
        for name, goal in result.goals.items():
            goals.add_row(
                name, f"{goal.measured:.2f} {goal.unit}", f"{goal.target:g}", f"{goal.ratio:.2f}", str(goal.met)
            )
        printer = Console()
        printer.print(table)
        printer.print(goals)
        for run in result.triage:
            printer.print(f"triage {run.workers} worker(s): {run.images_per_s:.2f} images/s ({run.errors} errors)")
        printer.print(f"chart: {chart}")
    except RiadError as exc:
        console.print(exc.one_line(), markup=False, highlight=False)
        raise typer.Exit(exc.exit_code) from None
