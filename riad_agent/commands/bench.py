"""``riad bench``: every stage of an inspection, triage throughput and the speed goals, as JSON + PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from riad_agent.commands.terminal import write_text
from riad_agent.errors import RiadError

DEFAULT_CHART = Path("docs/bench.png")


def bench(
    ctx: typer.Context,
    images: Annotated[int, typer.Option(min=2, max=1000, help="Generated images timed per stage.")] = 20,
    json_out: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
    chart: Annotated[Path, typer.Option(help="Where the PNG chart goes.")] = DEFAULT_CHART,
    reduced: Annotated[
        bool, typer.Option(help="A small run that finishes well under a minute (CI).")
    ] = False,
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

        config = BenchConfig(
            images=images, reduced=reduced, embedder=embedder, latent_steps=steps, threads=threads, vlm=vlm
        )
        with console.status("benchmark") as status:
            result = run_bench(config, progress=lambda stage: status.update(f"benchmark: {stage}"))
        write_chart(result, chart)
        text = result.model_dump_json(indent=2)
        if out is not None:
            write_text(out, text)
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
                name,
                f"{goal.measured:.2f} {goal.unit}",
                f"{goal.target:g}",
                f"{goal.ratio:.2f}",
                str(goal.met),
            )
        printer = Console()
        printer.print(table)
        printer.print(goals)
        for run in result.triage:
            printer.print(
                f"triage {run.workers} worker(s): {run.images_per_s:.2f} images/s ({run.errors} errors)"
            )
        printer.print(f"chart: {chart}")
    except RiadError as exc:
        console.print(exc.one_line(), markup=False, highlight=False)
        raise typer.Exit(exc.exit_code) from None


def bench_triage(
    images: Annotated[int, typer.Option(min=2, max=500, help="Generated 256 px images to triage.")] = 24,
    large_images: Annotated[
        int, typer.Option(min=2, max=200, help="Generated 1024 px images to triage.")
    ] = 8,
    references: Annotated[int, typer.Option(min=1, max=50, help="Normal references of each size.")] = 8,
    threads: Annotated[int, typer.Option(min=1, max=64, help="torch CPU threads.")] = 2,
    json_out: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON here.")] = None,
    ray: Annotated[
        bool, typer.Option("--ray", help="Also --ray with 1 and 2 actors on a local cluster.")
    ] = False,
) -> None:
    """Expert-only triage against the bare expert (256 and 1024 px), the live folder's latency, and --ray."""
    console = Console(stderr=True)
    try:
        import tempfile

        from riad_agent.bench.triage_throughput import run_triage_bench
        from riad_agent.settings import load_settings

        with (
            tempfile.TemporaryDirectory(prefix="riad-bench-triage-") as tmp,
            console.status("triage benchmark"),
        ):
            result = run_triage_bench(
                load_settings(),
                Path(tmp),
                images=images,
                large_images=large_images,
                references=references,
                threads=threads,
                with_ray=ray,
            )
        text = result.model_dump_json(indent=2)
        if out is not None:
            write_text(out, text)
        if json_out:
            typer.echo(text)
            return
        speeds = Table(
            title=f"expert-only triage vs the bare expert ({result.expert}, {result.threads} threads)"
        )
        for column in ("size", "images", "bare expert s", "triage s", "triage images/s", "overhead"):
            speeds.add_column(column, justify="right")
        for speed in result.speeds:
            speeds.add_row(
                f"{speed.size} px",
                str(speed.images),
                f"{speed.expert_s:.2f}",
                f"{speed.triage_s:.2f}",
                f"{speed.triage_images_per_s:.2f}",
                f"{speed.overhead:.2f}x",
            )
        goals = Table(title="goals (measured / target; noisy on a shared machine)")
        for column in ("goal", "measured", "target", "met"):
            goals.add_column(column)
        for goal in result.goals:
            goals.add_row(goal.name, f"{goal.measured:.2f} {goal.unit}", f"{goal.target:g}", str(goal.met))
        printer = Console()
        printer.print(speeds)
        printer.print(goals)
        printer.print("watch latencies (s): " + ", ".join(f"{v:.2f}" for v in result.watch_latency_s))
        if result.ray is not None:
            printer.print(
                f"--ray: 1 worker {result.ray.one_worker_s:.2f} s, 2 workers {result.ray.two_workers_s:.2f} s "
                f"({result.ray.images} images, actor start-up included: {result.ray.speedup:.2f}x); first to last "
                f"record {result.ray.warm_one_worker_s:.2f} s vs {result.ray.warm_two_workers_s:.2f} s "
                f"({result.ray.warm_speedup:.2f}x); records identical: {result.ray.identical}"
            )
    except RiadError as exc:
        console.print(exc.one_line(), markup=False, highlight=False)
        raise typer.Exit(exc.exit_code) from None
