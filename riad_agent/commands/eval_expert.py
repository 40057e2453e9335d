"""``riad eval expert``: measure the vision expert on an MVTec-layout folder or on ELPV.

The evaluation itself lives in :mod:`riad_agent.eval.expert_eval`; this module only parses options,
so ``riad --help`` does not import torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console
from rich.progress import Progress

from riad_agent.errors import InvalidRequestError, RiadError

if TYPE_CHECKING:
    from riad_agent.protocols import Pose


def eval_expert(
    data: Annotated[str, typer.Option("--data", help="MVTec-layout folder, or 'elpv'.")],
    shots: Annotated[int, typer.Option(help="Reference images per category; 0 = all.")] = 0,
    categories: Annotated[
        list[str] | None, typer.Option("--category", "-c", help="Only these categories (repeatable).")
    ] = None,
    size: Annotated[int, typer.Option(help="Expert input size in pixels.")] = 256,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the reference choice and splits.")] = 0,
    draws: Annotated[
        int,
        typer.Option(
            help="Reference draws (seeds SEED, SEED+1, ...) averaged, each category's range shown: "
            "which few references you have moves the figures."
        ),
    ] = 1,
    limit: Annotated[int, typer.Option(help="ELPV: at most this many test cells per class; 0 = all.")] = 0,
    backbone: Annotated[str, typer.Option(help="Expert backbone name.")] = "efficientnet-lite0",
    threads: Annotated[int, typer.Option(help="Torch CPU threads.")] = 2,
    rotate: Annotated[
        bool, typer.Option(help="Turn every test image by a seeded random angle (references unturned).")
    ] = False,
    pose: Annotated[
        str | None, typer.Option(help="Known pose of the products ('free' or 'fixed'); default: inferred.")
    ] = None,
    texture: Annotated[
        bool | None,
        typer.Option(
            "--texture/--object",
            help="Texture-like setting (per-image contrast normalisation, top-20 image score); "
            "default: on for elpv, off for MVTec folders.",
        ),
    ] = None,
) -> None:
    """Image AUROC, pixel AUROC, AUPRO@30% and ms per image of the vision expert."""
    import torch

    from riad_agent.eval.expert_eval import (
        ExpertEvaluation,
        evaluate_elpv,
        evaluate_mvtec,
        expert_for,
        mean_of,
        pool_draws,
    )
    from riad_agent.eval.expert_eval import table as results_table

    console = Console(stderr=True)
    try:
        if not 64 <= size <= 1024:
            raise InvalidRequestError(f"--size must be between 64 and 1024 (got {size})")
        if pose not in (None, "free", "fixed"):
            raise InvalidRequestError(f"--pose must be 'free' or 'fixed' (got {pose})")
        if shots < 0:
            raise InvalidRequestError(f"--shots must be >= 0 (got {shots})")
        if not 1 <= draws <= 100:
            raise InvalidRequestError(f"--draws must be between 1 and 100 (got {draws})")
        torch.set_num_threads(max(1, threads))
        is_elpv = data.strip().lower() == "elpv"
        dataset = "elpv" if is_elpv else str(data)
        expert = expert_for(backbone, size, is_elpv if texture is None else texture, None)
        per_draw = []
        with Progress(console=console, transient=True, disable=json_out) as progress:
            for drawn_seed in range(seed, seed + draws):
                if is_elpv:
                    found = evaluate_elpv(expert, shots, categories, drawn_seed, limit, progress)
                else:
                    found = evaluate_mvtec(
                        Path(data),
                        expert,
                        shots,
                        categories,
                        drawn_seed,
                        progress,
                        rotate=rotate,
                        pose=cast("Pose | None", pose),
                    )
                per_draw.append(found)
        results = pool_draws(per_draw)
        evaluation = ExpertEvaluation(
            dataset=dataset,
            shots=shots,
            draws=draws,
            image_size=size,
            backbone=expert.backbone_id,
            categories=results,
            mean=mean_of(results),
        )
    except RiadError as exc:
        console.print(exc.one_line(), markup=False, highlight=False)
        raise typer.Exit(exc.exit_code) from None
    if json_out:
        typer.echo(json.dumps(evaluation.model_dump(mode="json"), indent=None))
    else:
        Console().print(results_table(evaluation))
