"""What the commands share on the terminal: the consoles, a progress spinner and one-line typed errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from riad_agent.errors import InvalidRequestError, OutputWriteError, RiadError, first_problem

#: progress and messages (stderr); ``markup=False``: texts print verbatim (ids like ``[mvtec/screw]``, paths
#: with brackets), styles come from ``rich.text.Text``
console = Console(stderr=True, markup=False)
#: results (stdout)
stdout = Console(markup=False)


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


def spinner(transient: bool = False) -> Progress:
    """A spinner with elapsed time on stderr; silent when stderr is not a terminal (pipes, logs)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
        disable=not console.is_terminal,
    )


def write_text(path: Path, text: str) -> None:
    """Write ``text`` and a final newline to ``path``; :class:`OutputWriteError` when it cannot."""
    try:
        path.write_text(text + "\n")
    except OSError as exc:
        raise OutputWriteError(f"cannot write {path}: {exc.strerror or exc}") from exc
