"""``riad eval typing``: defect typing by labelled exemplars, leave-one-out (see :mod:`riad_agent.eval.typing_eval`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from riad_agent.errors import InvalidRequestError, RiadError

if TYPE_CHECKING:
    from riad_agent.eval.typing_eval import ExpertBox


def eval_typing(
    data: Annotated[Path, typer.Option("--data", help="MVTec-layout folder with ground_truth masks.")],
    exemplars: Annotated[
        int, typer.Option(help="Labelled exemplars per defect type (the others left out).")
    ] = 1,
    categories: Annotated[
        list[str] | None, typer.Option("--category", "-c", help="Only these categories (repeatable).")
    ] = None,
    box: Annotated[
        str,
        typer.Option(help="The query's region: 'mask' (typing alone) or 'expert' (its strongest region)."),
    ] = "mask",
    shots: Annotated[int, typer.Option(help="With --box expert: normal references from train/good.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the exemplar choice.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Top-1 accuracy of defect typing by labelled exemplars, per category and on average."""
    console = Console(stderr=True)
    try:
        if exemplars < 1:
            raise InvalidRequestError(f"--exemplars must be >= 1 (got {exemplars})")
        if box not in ("mask", "expert"):
            raise InvalidRequestError(f"--box must be 'mask' or 'expert' (got {box!r})")
        if shots < 1:
            raise InvalidRequestError(f"--shots must be >= 1 (got {shots})")
        from riad_agent.eval.typing_eval import categories_of, evaluate_category
        from riad_agent.products import ImageEmbedder

        folders = categories_of(data, categories)
        embedder = ImageEmbedder()
        results = []
        for folder in folders:
            expert_box = _expert_box(folder, shots) if box == "expert" else None
            result = evaluate_category(
                folder, embedder, exemplars, "expert" if box == "expert" else "mask", expert_box, seed
            )
            if result is not None:
                results.append(result)
        if not results:
            raise InvalidRequestError(f"no category under {data} has labelled defects of two or more types")
    except RiadError as exc:
        console.print(exc.one_line(), markup=False)
        raise typer.Exit(code=exc.exit_code) from exc
    mean = sum(r.accuracy for r in results) / len(results)
    if json_out:
        print(json.dumps({"results": [r.model_dump() for r in results], "mean_accuracy": round(mean, 4)}))
        return
    table = Table("category", "types", "queries", "accuracy", "chance", "typed", "right when typed")
    for r in results:
        table.add_row(
            r.category,
            str(r.types),
            str(r.queries),
            f"{r.accuracy:.3f}",
            f"{r.chance:.3f}",
            f"{r.typed:.2f}",
            f"{r.right_when_typed:.3f}",
        )
    Console().print(table)
    Console().print(f"mean accuracy {mean:.3f} ({exemplars} exemplar(s) per type, box from the {box})")


def _expert_box(folder: Path, shots: int) -> ExpertBox:
    """The expert's strongest region (or its peak area) against ``shots`` normal train images."""
    from PIL import Image

    from riad_agent.eval.typing_eval import strongest_box
    from riad_agent.expert import ExpertConfig, PatchCoreExpert

    references = [
        Image.open(p).convert("RGB") for p in sorted((folder / "train" / "good").glob("*.png"))[:shots]
    ]
    if not references:
        raise InvalidRequestError(f"--box expert needs normal images in {folder / 'train' / 'good'}")
    return strongest_box(PatchCoreExpert(ExpertConfig(heatmap=False)), references)
