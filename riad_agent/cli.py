"""The ``riad`` command line: one entry point, sub-commands, one-line typed errors.

Heavy libraries (torch, transformers, qdrant) are imported inside the commands that need them, so
``riad --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from riad_agent import __version__
from riad_agent.errors import InvalidRequestError, RiadError, first_problem

app = typer.Typer(
    name="riad",
    help="riad-agent: an explainable industrial inspector (Reason-IAD latent reasoning + vision expert).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
eval_app = typer.Typer(help="Evaluate components on labelled data.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: costs measured side by side, reported as ratios.")
serve_app = typer.Typer(help="Serve riad-agent to other programs: MCP, the reasoner service.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")
app.add_typer(serve_app, name="serve")

console = Console(stderr=True)
stdout = Console()
F = TypeVar("F", bound=Callable[..., Any])


def fail(error: RiadError) -> typer.Exit:
    """Print a typed error as one line on stderr and return the exit to raise."""
    print(error.one_line(), file=sys.stderr)
    return typer.Exit(code=error.exit_code)


@contextmanager
def typed_errors() -> Iterator[None]:
    """Turn every :class:`RiadError` into a one-line message and its exit code."""
    try:
        yield
    except RiadError as exc:
        raise fail(exc) from None
    except ValidationError as exc:  # an option value a contract refuses (e.g. --concurrency 0)
        where, problem = first_problem(exc, "options")
        raise fail(InvalidRequestError(f"invalid value for {where}: {problem}")) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise typer.Exit(code=130) from None


def _version(value: bool) -> None:
    if value:
        print(f"riad-agent {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """riad-agent command line."""


def _parse_options(options: list[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for item in options:
        letter, sep, text = item.partition("=")
        if not sep:
            raise InvalidRequestError(f"--option must look like A=text, got {item!r}")
        parsed[letter.strip().upper()] = text.strip()
    return parsed


def _reference_paths(references: list[Path], reference_dir: Path | None, limit: int) -> list[str]:
    paths = [str(p) for p in references]
    if reference_dir is not None:
        if not reference_dir.is_dir():
            raise InvalidRequestError(f"--reference-dir {reference_dir} is not a directory")
        found = sorted(
            p for p in reference_dir.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
        )
        if not found:
            raise InvalidRequestError(f"--reference-dir {reference_dir} holds no images")
        paths += [str(p) for p in found[:limit]]
    return paths


def _progress(transient: bool = False) -> Progress:
    """A spinner with elapsed time on stderr; silent when stderr is not a terminal (pipes, logs)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
        disable=not console.is_terminal,
    )


def _run_with_progress(inspector: Any, request: Any, quiet: bool) -> Any:
    if quiet or not console.is_terminal:
        return inspector.inspect(request)
    with _progress(transient=True) as progress:
        task = progress.add_task("inspecting", total=None)

        def update(event: dict[str, Any]) -> None:
            text = str(event.get("stage", ""))
            if "iteration" in event:
                text += f" iteration {event['iteration']}"
            if isinstance(event.get("reward"), float):
                text += f" reward {event['reward']:.3f}"
            progress.update(task, description=text)

        return inspector.inspect(request, progress=update)


def print_report(report: Any) -> None:
    """A human-readable report on stdout."""
    table = Table(show_header=False, box=None)
    table.add_row("verdict", f"[bold]{report.verdict}[/bold]")
    table.add_row("anomaly score", f"{report.anomaly_score:.3f}")
    if report.category:
        table.add_row("category", report.category + (" (guessed)" if report.category_guessed else ""))
    if report.answer:
        table.add_row("answer", f"{report.answer}. {report.answer_text or ''}")
    if report.defect_type:
        table.add_row("defect type", report.defect_type)
    for region in report.regions[:5]:
        table.add_row("region", f"x {region.x0}-{region.x1}, y {region.y0}-{region.y1} (score {region.score:.2f})")
    for hit in report.knowledge[:4]:
        table.add_row("knowledge", f"{hit.id} ({hit.score:.3f})")
    if report.degraded:
        table.add_row("degraded", ", ".join(report.degraded))
    table.add_row("explanation", report.explanation)
    stdout.print(table)


@app.command()
def inspect(
    image: Annotated[str, typer.Argument(help="Image file (or base64 / data URI).")],
    category: Annotated[str | None, typer.Option(help="Product category, e.g. hazelnut.")] = None,
    reference: Annotated[
        list[Path] | None, typer.Option("--reference", "-r", help="A normal reference image (repeatable).")
    ] = None,
    reference_dir: Annotated[Path | None, typer.Option(help="A folder of normal reference images.")] = None,
    max_references: Annotated[int, typer.Option(help="At most this many images from --reference-dir.")] = 50,
    question: Annotated[str | None, typer.Option(help="A multiple-choice question to answer.")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", help="An option as A=text (repeatable).")] = None,
    steps: Annotated[int, typer.Option(help="Latent optimisation iterations.")] = 10,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    no_reasoner: Annotated[bool, typer.Option("--no-reasoner", help="Expert and knowledge only.")] = False,
    no_knowledge: Annotated[bool, typer.Option("--no-knowledge", help="Skip knowledge retrieval.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    heatmap: Annotated[Path | None, typer.Option(help="Write the heatmap overlay PNG here.")] = None,
) -> None:
    """Inspect one image: verdict, calibrated score, regions, knowledge and reasoning trace."""
    with typed_errors():
        from riad_agent.inspector import Inspector, parse_request

        request_data: dict[str, Any] = {
            "image": image,
            "category": category,
            "references": _reference_paths(reference or [], reference_dir, max_references),
            "options": {
                "latent_steps": steps,
                "seed": seed,
                "use_reasoner": not no_reasoner,
                "use_knowledge": not no_knowledge,
                "return_heatmap": heatmap is not None,
            },
        }
        if question is not None:
            request_data["question"] = {"text": question, "options": _parse_options(option or [])}
        elif option:
            raise InvalidRequestError("--option needs --question")
        request = parse_request(request_data)
        report = _run_with_progress(Inspector(), request, quiet=json_out)
        if heatmap is not None and report.heatmap_png is not None:
            _write_bytes(heatmap, report.heatmap_png)
        if json_out:
            print(report.model_dump_json(indent=2, exclude={"heatmap_png"}))
        else:
            print_report(report)


def _write_bytes(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        from riad_agent.errors import OutputWriteError

        raise OutputWriteError(f"cannot write {path}: {exc.strerror or exc}") from exc


@app.command()
def demo(
    out: Annotated[Path | None, typer.Option(help="Folder for the generated images and reports.")] = None,
    references: Annotated[int, typer.Option(help="Normal reference images to generate.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the generated samples.")] = 0,
    no_reasoner: Annotated[bool, typer.Option("--no-reasoner", help="Expert and knowledge only.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the reports as JSON lines.")] = False,
) -> None:
    """Generate licence-clean sample parts with and without defects and inspect them end to end."""
    with typed_errors():
        from riad_agent.data.synthetic import generate_sample
        from riad_agent.inspector import Inspector, parse_request

        folder = out or Path(tempfile.mkdtemp(prefix="riad-demo-"))
        folder.mkdir(parents=True, exist_ok=True)
        category = "synthetic/washer"
        reference_paths = []
        for index in range(references):
            sample = generate_sample(category, None, seed=seed * 1000 + index)
            path = folder / f"reference_{index:02d}.png"
            sample.image.save(path)
            reference_paths.append(str(path))
        cases = [("normal", None), ("scratch", "scratch"), ("hole", "hole")]
        inspector = Inspector()
        for name, defect in cases:
            sample = generate_sample(category, defect, seed=seed * 1000 + 500 + len(name))
            image_path = folder / f"query_{name}.png"
            sample.image.save(image_path)
            request = parse_request(
                {
                    "image": str(image_path),
                    "category": category,
                    "references": reference_paths,
                    "options": {"use_reasoner": not no_reasoner, "return_heatmap": True, "seed": seed},
                }
            )
            report = _run_with_progress(inspector, request, quiet=json_out)
            if report.heatmap_png is not None:
                _write_bytes(folder / f"heatmap_{name}.png", report.heatmap_png)
            _write_bytes(
                folder / f"report_{name}.json", report.model_dump_json(indent=2, exclude={"heatmap_png"}).encode()
            )
            if json_out:
                record = {"case": name, "truth": defect or "normal", **report.model_dump(mode="json", exclude={"heatmap_png"})}
                print(json.dumps(record))
            else:
                stdout.rule(f"{image_path.name}  (generated: {defect or 'no defect'})")
                print_report(report)
        if not json_out:
            stdout.print(f"\nimages, heatmaps and JSON reports in {folder}")


@app.command()
def triage(
    folder: Annotated[Path, typer.Argument(help="Folder of images (searched recursively).")],
    out: Annotated[Path, typer.Option(help="JSONL results, appended as each image finishes.")] = Path(
        "results.jsonl"
    ),
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
            references=[Path(p) for p in _reference_paths([], reference_dir, max_references)],
            options={"use_reasoner": not no_reasoner},
            concurrency=concurrency,
            retry_errors=retry_errors,
        )
        with _progress() as progress:
            task = progress.add_task("triage", total=None)

            def update(event: dict[str, Any]) -> None:
                progress.update(task, total=event["total"], completed=event["done"],
                                description=f"triage {event['done']}/{event['total']}")

            graph = build_triage_graph(components=build_components(load_settings()), progress=update)
            summary = asyncio.run(run_triage(job, graph))
        if html is not None:
            from riad_agent.triage_html import write_triage_html

            write_triage_html(out, html)
        print(summary.model_dump_json())


@serve_app.command("mcp")
def serve_mcp(
    http: Annotated[bool, typer.Option("--http", help="Streamable HTTP instead of stdio.")] = False,
    host: Annotated[str, typer.Option(help="Address to bind with --http.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port with --http.")] = 8765,
) -> None:
    """Serve the inspection tool over MCP (stdio by default), with progress notifications."""
    with typed_errors():
        from riad_agent.settings import load_settings
        from riad_agent.tools.mcp_server import serve_mcp as run_server

        run_server("streamable-http" if http else "stdio", host=host, port=port, settings=load_settings())


def _register_components() -> None:
    """Attach the components' sub-commands (each module imports its heavy libraries lazily)."""
    from riad_agent.commands.bench import bench
    from riad_agent.commands.bench_latent import bench_latent
    from riad_agent.commands.eval_expert import eval_expert
    from riad_agent.commands.eval_mmad import eval_mmad
    from riad_agent.commands.eval_qa import eval_qa
    from riad_agent.commands.kb import app as kb_app
    from riad_agent.commands.serve_reasoner import serve_reasoner

    app.add_typer(kb_app, name="kb", help="The defect knowledge base: ingest, list, search, eval.")
    eval_app.command("expert")(eval_expert)
    eval_app.command("mmad")(eval_mmad)
    eval_app.command("qa")(eval_qa)
    bench_app.callback(invoke_without_command=True)(bench)
    bench_app.command("latent")(bench_latent)
    serve_app.command("reasoner")(serve_reasoner)


_register_components()


def main() -> None:
    """Entry point of the ``riad`` script."""
    app()


if __name__ == "__main__":
    main()
