"""``riad kb``: ingest, list, search and evaluate the defect knowledge base."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from riad_agent.errors import RiadError

if TYPE_CHECKING:
    from riad_agent.knowledge.loaders import SourceFormat
    from riad_agent.knowledge.search import SearchMode
    from riad_agent.knowledge.store import QdrantKnowledgeBase

app = typer.Typer(help="The defect knowledge base: ingest, list, search, evaluate.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


def _fail(exc: RiadError) -> typer.Exit:
    typer.echo(exc.one_line(), err=True)
    return typer.Exit(exc.exit_code)


@contextmanager
def _progress(label: str, quiet: bool) -> Iterator[Callable[[int, int], None] | None]:
    if quiet or not err_console.is_terminal:
        yield None
        return
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _tell_store_waits() -> None:
    """Print on stderr when the command waits for another process writing the embedded store."""
    logger = logging.getLogger("riad_agent.knowledge.local_store")
    if not any(getattr(h, "riad_kb", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.riad_kb = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _open(ingest_packaged: bool = True, quiet: bool = False) -> QdrantKnowledgeBase:
    from riad_agent.knowledge.factory import open_knowledge_base
    from riad_agent.settings import load_settings

    settings = load_settings()
    _tell_store_waits()
    with _progress("embedding packaged knowledge", quiet) as update:
        return open_knowledge_base(settings, ingest_packaged=ingest_packaged, progress=update)


@app.command("ingest")
def ingest(
    path: Annotated[
        Path,
        typer.Argument(help="A YAML file or folder, an MMAD domain_knowledge.json or a Markdown folder."),
    ],
    fmt: Annotated[
        str | None, typer.Option("--format", help="riad | mmad | markdown (guessed when omitted).")
    ] = None,
    rebuild: Annotated[bool, typer.Option(help="Rebuild the whole collection and swap it in.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the ingest report as JSON.")] = False,
) -> None:
    """Validate a knowledge source and make the base hold it (re-ingest updates only what changed)."""
    from riad_agent.errors import InvalidRequestError
    from riad_agent.knowledge.loaders import load_entries, scope_of, tree_fingerprint

    try:
        if fmt not in (None, "riad", "mmad", "markdown"):
            raise InvalidRequestError(f"--format must be riad, mmad or markdown (got {fmt!r})")
        entries = load_entries(path, cast("SourceFormat | None", fmt))
        scope = scope_of(path)
        fingerprint = tree_fingerprint(path) if scope == "package:base" else None
        kb = _open(ingest_packaged=False, quiet=as_json)
        try:
            with _progress("embedding", as_json) as update:
                report = kb.ingest(
                    entries, scope=scope, fingerprint=fingerprint, rebuild=rebuild, progress=update
                )
        finally:
            kb.close()
    except RiadError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        typer.echo(f"{path}: {report.summary()}")


@app.command("list")
def list_categories(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every category with its defect types."""
    try:
        kb = _open(quiet=as_json)
        try:
            infos = kb.list_categories()
        finally:
            kb.close()
    except RiadError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps([i.model_dump() for i in infos], indent=2))
        return
    table = Table("category", "defect types")
    for info in infos:
        table.add_row(info.category, ", ".join(info.defect_types))
    console.print(table)


@app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="What to look for, e.g. 'dark crack on the shell'.")],
    category: Annotated[
        str | None, typer.Option(help="'hazelnut' or 'mvtec/hazelnut'; all when omitted.")
    ] = None,
    k: Annotated[int, typer.Option(min=1, max=50, help="How many entries.")] = 4,
    mode: Annotated[str, typer.Option(help="hybrid | dense | sparse")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search the knowledge base."""
    from riad_agent.errors import InvalidRequestError

    try:
        if mode not in ("hybrid", "dense", "sparse"):
            raise InvalidRequestError(f"--mode must be hybrid, dense or sparse (got {mode!r})")
        kb = _open(quiet=as_json)
        try:
            hits = kb.search(query, category=category, k=k, mode=cast("SearchMode", mode))
            guess = kb.guess_category(query) if category is None else (kb.resolve_category(category), 1.0)
        finally:
            kb.close()
    except RiadError as exc:
        raise _fail(exc) from None
    if as_json:
        payload = {
            "query": query,
            "mode": mode,
            "category": guess[0],
            "category_guessed": category is None,
            "category_score": guess[1],
            "hits": [h.model_dump() for h in hits],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    if category is None and guess[0]:
        console.print(f"guessed category: {guess[0]} ({guess[1]:.2f})", markup=False)
    table = Table("score", "id", "title")
    for hit in hits:
        table.add_row(f"{hit.score:.3f}", hit.id, hit.title)
    console.print(table)


@app.command("eval")
def evaluate(
    queries: Annotated[
        Path | None, typer.Option(help="Query set YAML (default: the packaged knowledge/eval/queries.yaml).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    show_misses: Annotated[bool, typer.Option(help="List the queries whose top hit was wrong.")] = False,
) -> None:
    """Recall@1, recall@3 and MRR of every search mode, category filter off and on."""
    from riad_agent.knowledge.evaluate import evaluate as run_eval
    from riad_agent.knowledge.evaluate import load_queries

    try:
        items = load_queries(queries)
        kb = _open(quiet=as_json)
        try:
            report = run_eval(kb, items)
        finally:
            kb.close()
    except RiadError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    table = Table("mode", "category filter", "recall@1", "recall@3", "MRR")
    for s in report.scores:
        table.add_row(
            s.mode,
            "on" if s.filtered else "off",
            f"{s.recall_at_1:.3f}",
            f"{s.recall_at_3:.3f}",
            f"{s.mrr:.3f}",
        )
    console.print(f"{report.queries} queries")
    console.print(table)
    if show_misses:
        for s in report.scores:
            for miss in s.misses_at_1:
                console.print(f"[{s.mode}/{'on' if s.filtered else 'off'}] {miss}", markup=False)


if __name__ == "__main__":
    app()
