"""The ``riad`` command line: the app, its sub-command groups and the entry point.

Every command lives in :mod:`riad_agent.commands` (one module per command or group). Heavy
libraries (torch, transformers, qdrant) are imported inside the commands that need them, so
``riad --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from riad_agent import __version__

app = typer.Typer(
    name="riad",
    help="riad-agent: an explainable industrial inspector (Reason-IAD latent reasoning + vision expert).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
eval_app = typer.Typer(help="Evaluate components on labelled data.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: costs measured side by side, reported as ratios.")
serve_app = typer.Typer(
    help="Serve riad-agent to other programs: MCP, the reasoner service.", no_args_is_help=True
)
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")
app.add_typer(serve_app, name="serve")


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


def _register_commands() -> None:
    """Attach every sub-command and sub-command group to the app."""
    from riad_agent.commands.bench import bench, bench_triage
    from riad_agent.commands.bench_latent import bench_latent
    from riad_agent.commands.demo import demo
    from riad_agent.commands.eval_expert import eval_expert
    from riad_agent.commands.eval_injection import eval_injection
    from riad_agent.commands.eval_mmad import eval_mmad
    from riad_agent.commands.eval_qa import eval_qa
    from riad_agent.commands.eval_typing import eval_typing
    from riad_agent.commands.inspection import inspect
    from riad_agent.commands.kb import app as kb_app
    from riad_agent.commands.product import app as product_app
    from riad_agent.commands.serve_mcp import serve_mcp
    from riad_agent.commands.serve_reasoner import serve_reasoner
    from riad_agent.commands.triage import triage

    app.command()(inspect)
    app.command()(demo)
    app.command()(triage)
    app.add_typer(kb_app, name="kb", help="The defect knowledge base: ingest, list, search, eval.")
    app.add_typer(product_app, name="product", help="Products the inspector remembers: references, defects.")
    eval_app.command("expert")(eval_expert)
    eval_app.command("injection")(eval_injection)
    eval_app.command("mmad")(eval_mmad)
    eval_app.command("qa")(eval_qa)
    eval_app.command("typing")(eval_typing)
    bench_app.callback(invoke_without_command=True)(bench)
    bench_app.command("latent")(bench_latent)
    bench_app.command("triage")(bench_triage)
    serve_app.command("mcp")(serve_mcp)
    serve_app.command("reasoner")(serve_reasoner)


_register_commands()


def main() -> None:
    """Entry point of the ``riad`` script."""
    app()


if __name__ == "__main__":
    main()
