"""``riad eval injection``: the share of defects on which the latent loop keeps a patch (goal >= 90 %)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from riad_agent.errors import RiadError


def eval_injection(
    generated: Annotated[
        int, typer.Option(min=0, help="Anomalous generated images (categories x defects).")
    ] = 21,
    mvtec: Annotated[
        Path | None,
        typer.Option(help="MVTec AD-layout folder: its defective test images with ground_truth masks."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many MVTec images.")] = None,
    model: Annotated[
        str, typer.Option(help="'builtin', or a hub id / local path of a supported VLM.")
    ] = "builtin",
    steps: Annotated[int, typer.Option(min=1, max=200, help="Latent iterations T.")] = 3,
    references: Annotated[int, typer.Option(min=1, help="Normal references the expert compares with.")] = 4,
    selection: Annotated[
        str | None, typer.Option(help="Patch selection 'prior', 'gated' or 'mixed' (default: the config's).")
    ] = None,
    layout: Annotated[
        str | None, typer.Option(help="Patch layout 'interleaved' or 'after' (default: the config's).")
    ] = None,
    initial: Annotated[
        str | None, typer.Option(help="Initial patches 'prior' or 'none' (default: the config's).")
    ] = None,
    margin: Annotated[
        float | None, typer.Option(min=0.0, help="Acceptance margin (default: the config's).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated images.")] = 0,
    device: Annotated[str, typer.Option(help="'auto', 'cpu', 'cuda'.")] = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Whether the patches the reasoner keeps lie on the ground-truth defect."""
    console = Console(stderr=True)
    try:
        from itertools import chain

        from riad_agent.errors import InvalidRequestError
        from riad_agent.eval.injection_eval import (
            generated_cases,
            injection_markdown,
            mvtec_cases,
            run_injection_eval,
        )
        from riad_agent.expert import open_expert
        from riad_agent.models.loading import open_vlm
        from riad_agent.reasoning.config import config_for
        from riad_agent.reasoning.reasoner import LatentReasoner
        from riad_agent.settings import load_settings

        if generated == 0 and mvtec is None:
            raise InvalidRequestError("nothing to evaluate: give --generated > 0 and/or --mvtec")
        overrides: dict[str, object] = {"rationale_tokens": 1}
        for key, value, allowed in (
            ("patch_selection", selection, ("prior", "gated", "mixed")),
            ("patch_layout", layout, ("interleaved", "after")),
            ("initial_patches", initial, ("prior", "none")),
        ):
            if value is not None:
                if value not in allowed:
                    raise InvalidRequestError(
                        f"{key.replace('_', ' ')} must be one of {', '.join(allowed)}, not {value!r}"
                    )
                overrides[key] = value
        if margin is not None:
            overrides["accept_margin"] = margin
        settings = load_settings()
        with console.status(f"loading {model} and the expert"):
            vlm = open_vlm(model, device=device, dtype=settings.dtype, cache_dir=settings.model_cache_dir)
            expert = open_expert(settings)
        reasoner = LatentReasoner(vlm, config_for(vlm, **overrides))
        cases = chain(
            generated_cases(generated, seed=seed, references=references),
            mvtec_cases(mvtec, references=references, limit=limit) if mvtec is not None else iter(()),
        )

        def progress(name: str, done: int) -> None:
            console.print(f"{done:4d} {name}", markup=False, highlight=False)

        result = run_injection_eval(reasoner, expert, cases, steps=steps, progress=progress)
        if json_out:
            payload = {
                "config": {k: v for k, v in reasoner.config.model_dump().items() if k in _SHOWN},
                "sources": {k: v.model_dump() for k, v in result.sources.items()},
                "kept_rate": result.total.kept_rate,
                "misses": result.misses,
            }
            typer.echo(json.dumps(payload, indent=1))
        else:
            config = reasoner.config
            typer.echo(
                f"selection {config.patch_selection}, layout {config.patch_layout}, initial {config.initial_patches}, "
                f"margin {config.accept_margin}, T = {steps}"
            )
            typer.echo(injection_markdown(result))
            typer.echo(
                f"goal: a kept patch on the defect in >= 90% of cases; {_verdict(result.total.kept_rate)}"
            )
    except RiadError as exc:
        console.print(exc.one_line(), markup=False, highlight=False)
        raise typer.Exit(exc.exit_code) from None


_SHOWN = (
    "patch_selection",
    "patch_layout",
    "initial_patches",
    "accept_margin",
    "patches",
    "max_patches",
    "prior_weight",
)


def _verdict(rate: float) -> Literal["met", "missed"]:
    return "met" if rate >= 0.9 else "missed"
