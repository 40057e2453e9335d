"""``riad triage``: a folder of images (or a live folder), resumable, with a JSONL log, a table, an
optional HTML page and a gate for CI and line-stop scripts (``--fail-on``: exit code 4)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from riad_agent.commands.inspection import reference_paths
from riad_agent.commands.terminal import spinner, typed_errors

#: Exit code when ``--fail-on`` finds what it gates on (typed errors use 2 and 3, a crash 1).
GATE_EXIT_CODE = 4


def gate_failures(summary: Any, fail_on: Literal["anomalous", "uncertain"] | None) -> int:
    """How many images trip the gate: anomalous ones, and with ``uncertain`` also uncertain and errors."""
    if fail_on is None:
        return 0
    count: int = summary.anomalous
    if fail_on == "uncertain":
        count += summary.uncertain + summary.errors
    return count


def triage(
    folder: Annotated[
        Path | None, typer.Argument(help="Folder of images (searched recursively); or use --watch.")
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            help="JSONL results, appended as each image finishes; an existing file must hold triage results "
            "of the same folder (a run resumes it). One run at a time per file."
        ),
    ] = Path("results.jsonl"),
    html: Annotated[Path | None, typer.Option(help="Also write an HTML report page here.")] = None,
    category: Annotated[str | None, typer.Option(help="Product category of every image.")] = None,
    reference_dir: Annotated[Path | None, typer.Option(help="A folder of normal reference images.")] = None,
    max_references: Annotated[int, typer.Option(help="At most this many references.")] = 50,
    concurrency: Annotated[int, typer.Option(help="Images in flight at once.")] = 2,
    reasoner: Annotated[
        Literal["always", "uncertain", "never"],
        typer.Option(
            help="Run the latent reasoner (the whole graph) for every image, uncertain ones, or none "
            "(uncertain: not with a reasoner that only repeats the expert's score, the builtin model)."
        ),
    ] = "uncertain",
    no_reasoner: Annotated[bool, typer.Option("--no-reasoner", help="Same as --reasoner never.")] = False,
    fail_on: Annotated[
        Literal["anomalous", "uncertain"] | None,
        typer.Option(
            help=f"Exit with code {GATE_EXIT_CODE} when any image is anomalous (or, with 'uncertain', "
            "anomalous, uncertain or an error)."
        ),
    ] = None,
    output_format: Annotated[
        Literal["jsonl", "csv", "parquet"],
        typer.Option(
            "--format", help="Also write the results as a table beside the JSONL (results.csv / .parquet)."
        ),
    ] = "jsonl",
    watch: Annotated[
        Path | None,
        typer.Option(
            help="Triage images as they arrive in this folder until SIGINT/SIGTERM (restarts resume). "
            "Files are read once their size and time are stable; write to '.name.png' or 'name.png.tmp' "
            "and rename when done."
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Run on Ray Data: a cluster address, 'auto' (the running cluster) or 'local' (start one with "
            "--concurrency CPUs); --concurrency actors, each with a warm inspector. Paths must be visible to "
            "every node.",
        ),
    ] = None,
    heatmaps: Annotated[bool, typer.Option(help="Save each heatmap PNG beside the JSONL.")] = True,
    retry_errors: Annotated[bool, typer.Option(help="Redo images whose earlier result is an error.")] = False,
) -> None:
    """Triage a folder of images; resumable: re-running skips images already in the JSONL."""
    with typed_errors():
        import asyncio

        from riad_agent.components import build_components
        from riad_agent.errors import InvalidRequestError
        from riad_agent.graphs.triage import TriageJob, build_triage_graph, run_triage
        from riad_agent.settings import load_settings

        if (folder is None) == (watch is None):
            raise InvalidRequestError("give a folder of images or --watch FOLDER (one of them)")
        if watch is not None and ray is not None:
            raise InvalidRequestError("--watch runs on this machine; give --ray for a folder only")
        if no_reasoner and reasoner == "always":
            raise InvalidRequestError("--no-reasoner contradicts --reasoner always; give one of them")
        job = TriageJob(
            images=folder or watch,
            out=out,
            category=category,
            references=[Path(p) for p in reference_paths([], reference_dir, max_references)],
            concurrency=concurrency,
            retry_errors=retry_errors,
            reasoner="never" if no_reasoner else reasoner,
            heatmaps=heatmaps,
        )
        settings = load_settings()
        if ray is not None:
            from riad_agent.graphs.triage_ray import run_ray_triage

            summary = run_ray_triage(job, ray, settings=settings)
        elif watch is not None:
            from riad_agent.commands.triage_watch import watch_until_signal

            summary = watch_until_signal(job, build_components(settings))
        else:
            with spinner() as progress:
                task = progress.add_task("triage", total=None)

                def update(event: dict[str, Any]) -> None:
                    progress.update(
                        task,
                        total=event["total"],
                        completed=event["done"],
                        description=f"triage {event['done']}/{event['total']}",
                    )

                graph = build_triage_graph(components=build_components(settings), progress=update)
                summary = asyncio.run(run_triage(job, graph))
        if output_format != "jsonl":
            from riad_agent.graphs.triage_export import export_table

            table = export_table(out, output_format)
            print(f"table: {table}", file=sys.stderr)
        if html is not None:
            from riad_agent.imaging import ImagePolicy
            from riad_agent.triage_html import write_triage_html

            write_triage_html(out, html, policy=ImagePolicy.from_settings(settings))
        for caution in summary.cautions:  # for the person at the terminal; the JSON line carries them too
            print(f"caution: {caution}", file=sys.stderr)
        print(summary.model_dump_json())
    failures = gate_failures(summary, fail_on)
    if failures:
        print(f"gate: {failures} image(s) tripped --fail-on {fail_on}", file=sys.stderr)
        raise typer.Exit(GATE_EXIT_CODE)
