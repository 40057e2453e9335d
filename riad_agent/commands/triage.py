"""``riad triage``: a folder of images, resumable, with a JSONL log and an optional HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from riad_agent.commands.inspection import reference_paths
from riad_agent.commands.terminal import spinner, typed_errors


def triage(
    folder: Annotated[Path, typer.Argument(help="Folder of images (searched recursively).")],
    out: Annotated[
        Path,
        typer.Option(
            help="JSONL results, appended as each image finishes; an existing file must hold triage results. "
            "One run at a time per file."
        ),
    ] = Path("results.jsonl"),
    html: Annotated[Path | None, typer.Option(help="Also write an HTML report page here.")] = None,
    category: Annotated[str | None, typer.Option(help="Product category of every image.")] = None,
    reference_dir: Annotated[Path | None, typer.Option(help="A folder of normal reference images.")] = None,
    max_references: Annotated[int, typer.Option(help="At most this many references.")] = 50,
    concurrency: Annotated[int, typer.Option(help="Images inspected at once.")] = 2,
    no_reasoner: Annotated[bool, typer.Option("--no-reasoner", help="Expert and knowledge only.")] = False,
    retry_errors: Annotated[bool, typer.Option(help="Redo images whose earlier result is an error.")] = False,
) -> None:
    """Inspect a folder of images; resumable: re-running skips images already in the JSONL."""
    with typed_errors():
        import asyncio

        from riad_agent.components import build_components
        from riad_agent.graphs.triage import TriageJob, build_triage_graph, run_triage
        from riad_agent.settings import load_settings

        job = TriageJob(
            images=folder,
            out=out,
            category=category,
            references=[Path(p) for p in reference_paths([], reference_dir, max_references)],
            options={"use_reasoner": not no_reasoner},
            concurrency=concurrency,
            retry_errors=retry_errors,
        )
        with spinner() as progress:
            task = progress.add_task("triage", total=None)

            def update(event: dict[str, Any]) -> None:
                progress.update(
                    task,
                    total=event["total"],
                    completed=event["done"],
                    description=f"triage {event['done']}/{event['total']}",
                )

            graph = build_triage_graph(components=build_components(load_settings()), progress=update)
            summary = asyncio.run(run_triage(job, graph))
        if html is not None:
            from riad_agent.triage_html import write_triage_html

            write_triage_html(out, html)
        print(summary.model_dump_json())
