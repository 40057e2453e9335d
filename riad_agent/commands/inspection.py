"""``riad inspect``: one image, and the report helpers ``riad demo`` shares."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table
from rich.text import Text

from riad_agent.commands.terminal import console, spinner, stdout, typed_errors
from riad_agent.errors import InvalidRequestError
from riad_agent.schemas import references_text, score_text

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def parse_options(options: list[str]) -> dict[str, str]:
    """``["A=text", ...]`` -> ``{"A": "text", ...}`` (typed error for anything else, a letter given twice too)."""
    parsed: dict[str, str] = {}
    for item in options:
        letter, sep, text = item.partition("=")
        if not sep:
            raise InvalidRequestError(f"--option must look like A=text, got {item!r}")
        key = letter.strip().upper()
        if key in parsed:
            raise InvalidRequestError(
                f"--option {key} is given twice ({key}={parsed[key]!r} and {item!r}); give each letter once"
            )
        parsed[key] = text.strip()
    return parsed


def reference_paths(references: list[Path], reference_dir: Path | None, limit: int) -> list[str]:
    """The given reference images, then at most ``limit`` images of ``reference_dir`` (sorted)."""
    paths = [str(p) for p in references]
    if reference_dir is not None:
        if not reference_dir.is_dir():
            raise InvalidRequestError(f"--reference-dir {reference_dir} is not a directory")
        found = sorted(p for p in reference_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise InvalidRequestError(f"--reference-dir {reference_dir} holds no images")
        paths += [str(p) for p in found[:limit]]
    return paths


def run_with_progress(inspector: Any, request: Any, quiet: bool) -> Any:
    """Inspect, showing the graph's stages on a spinner (not when ``quiet`` or not on a terminal)."""
    if quiet or not console.is_terminal:
        return inspector.inspect(request)
    with spinner(transient=True) as progress:
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
    """A human-readable report on stdout (texts verbatim: the console reads no markup)."""
    table = Table(show_header=False, box=None)
    table.add_row("verdict", Text(report.verdict, style="bold"))
    table.add_row("anomaly score", f"{report.anomaly_score:.3f}")
    if report.category:
        guessed = ""
        if report.category_guessed:
            similarity = (
                f", similarity {report.category_similarity:.2f}" if report.category_similarity else ""
            )
            guessed = f" (guessed{similarity})"
        table.add_row("category", report.category + guessed)
    if report.references:
        pose = f", pose {report.pose}" if report.pose else ""
        table.add_row("compared with", references_text(report.references) + pose)
    if report.answer:
        table.add_row(
            "answer", f"{report.answer}. {(report.answer_text or '').rstrip()}{report.answer_caveat()}"
        )
    if report.defect_type and report.verdict == "uncertain":  # not called defective: what it would be
        table.add_row("if defective", f"it looks like {report.defect_type}")
    elif report.defect_type:
        table.add_row("defect type", report.defect_type)
    elif report.candidate_types:  # a lean, not a type: said so in the row's name
        leans = ", ".join(f"{c.defect_type} ({c.cue_match:.2f})" for c in report.candidate_types)
        table.add_row("candidate types", f"{leans} - by cue match, not a verdict")
    for region in report.regions[:5]:
        table.add_row(
            "region",
            f"x {region.x0}-{region.x1}, y {region.y0}-{region.y1} (score {score_text(region.score)})",
        )
    for hit in report.knowledge[:4]:
        table.add_row("knowledge", f"{hit.id} ({hit.score:.3f})")
    for note in report.degradation_notes():
        table.add_row("degraded", note.removeprefix("degraded: "))
    table.add_row("explanation", report.explanation)
    stdout.print(table)


def warn_degraded(report: Any) -> None:
    """One line on stderr per part the inspection skipped, so a degraded report is never silent."""
    for note in report.degradation_notes():
        print(f"warning: {note}", file=sys.stderr)


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file (creating its folder); :class:`OutputWriteError` when that fails."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        from riad_agent.errors import OutputWriteError

        raise OutputWriteError(f"cannot write {path}: {exc.strerror or exc}") from exc


ReasonerChoice = Literal["needed", "always", "never"]


def inspect(
    image: Annotated[str, typer.Argument(help="Image file (or base64 / data URI).")],
    category: Annotated[str | None, typer.Option(help="Product category, e.g. hazelnut.")] = None,
    reference: Annotated[
        list[Path] | None, typer.Option("--reference", "-r", help="A normal reference image (repeatable).")
    ] = None,
    reference_dir: Annotated[Path | None, typer.Option(help="A folder of normal reference images.")] = None,
    max_references: Annotated[int, typer.Option(help="At most this many images from --reference-dir.")] = 50,
    question: Annotated[str | None, typer.Option(help="A multiple-choice question to answer.")] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", help="An option as A=text (repeatable).")
    ] = None,
    steps: Annotated[int, typer.Option(help="Latent optimisation iterations.")] = 10,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    reasoner: Annotated[
        ReasonerChoice,
        typer.Option(
            help="When the latent reasoner runs: 'needed' (a question is asked or the expert's verdict is not "
            "clear), 'always', or 'never' (expert and knowledge only)."
        ),
    ] = "needed",
    no_reasoner: Annotated[bool, typer.Option("--no-reasoner", help="Same as --reasoner never.")] = False,
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
            "references": reference_paths(reference or [], reference_dir, max_references),
            "options": {
                "latent_steps": steps,
                "seed": seed,
                "use_reasoner": not no_reasoner and reasoner != "never",
                "reasoner_when": "always" if reasoner == "always" else "needed",
                "use_knowledge": not no_knowledge,
                "return_heatmap": heatmap is not None,
            },
        }
        if question is not None:
            options = parse_options(option or [])
            if len(options) < 2:
                raise InvalidRequestError(
                    "--question needs its options, at least two: --option 'A=Crack' --option 'B=Scratch'"
                )
            request_data["question"] = {"text": question, "options": options}
        elif option:
            raise InvalidRequestError("--option needs --question")
        request = parse_request(request_data)
        report = run_with_progress(Inspector(), request, quiet=json_out)
        if heatmap is not None and report.heatmap_png is not None:
            write_bytes(heatmap, report.heatmap_png)
        if json_out:
            print(report.model_dump_json(indent=2, exclude={"heatmap_png"}))
        else:
            print_report(report)
        warn_degraded(report)
