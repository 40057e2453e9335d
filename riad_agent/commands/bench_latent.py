"""``riad bench latent``: the latent loop's cost, prefix-cached vs naive, as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from riad_agent.commands.terminal import write_text
from riad_agent.errors import InvalidRequestError, RiadError


def bench_latent(
    steps: Annotated[int, typer.Option(min=1, max=200, help="Latent iterations T.")] = 10,
    perturbations: Annotated[int, typer.Option(min=2, max=256, help="Perturbations K per iteration.")] = 8,
    variant: Annotated[
        str, typer.Option(help="'qwen2_vl' or 'qwen2_5_vl' (tiny random model).")
    ] = "qwen2_vl",
    repeats: Annotated[int, typer.Option(min=1, max=20, help="Rounds per timing (the fastest counts).")] = 5,
    device: Annotated[str, typer.Option(help="'cpu' or 'cuda'.")] = "cpu",
    threads: Annotated[int, typer.Option(min=1, max=64, help="torch CPU threads.")] = 1,
    memory: Annotated[bool, typer.Option(help="Also measure peak memory (fresh processes on CPU).")] = True,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON here.")] = None,
) -> None:
    """Measure loop cost (cached vs naive), whole-inspection cost and peak memory; print JSON."""
    from rich.console import Console

    console = Console(stderr=True)
    try:
        if variant not in ("qwen2_vl", "qwen2_5_vl"):
            raise InvalidRequestError(f"unknown variant {variant!r}; use 'qwen2_vl' or 'qwen2_5_vl'")
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise InvalidRequestError("CUDA is not available on this machine; use --device cpu")
        elif device != "cpu":
            raise InvalidRequestError(f"unknown device {device!r}; use 'cpu' or 'cuda'")
        from riad_agent.bench.latent import LatentBenchConfig, run_latent_benchmark

        config = LatentBenchConfig(
            variant="qwen2_5_vl" if variant == "qwen2_5_vl" else "qwen2_vl",
            steps=steps,
            perturbations=perturbations,
            repeats=repeats,
            device=device,
            threads=threads,
            measure_memory=memory,
        )
        with console.status("latent benchmark") as status:
            result = run_latent_benchmark(
                config, progress=lambda stage: status.update(f"latent benchmark: {stage}")
            )
        text = result.model_dump_json(indent=2)
        if out is not None:
            write_text(out, text)
        typer.echo(text)
    except RiadError as exc:
        console.print(exc.one_line(), markup=False, highlight=False)
        raise typer.Exit(exc.exit_code) from None
