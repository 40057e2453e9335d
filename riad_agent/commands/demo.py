"""``riad demo``: generated parts with and without defects, inspected end to end."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from riad_agent.commands.inspection import print_report, run_with_progress, write_bytes
from riad_agent.commands.terminal import stdout, typed_errors


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
                    # the demo shows the whole method: the latent loop runs on every part
                    "options": {
                        "use_reasoner": not no_reasoner,
                        "reasoner_when": "always",
                        "return_heatmap": True,
                        "seed": seed,
                    },
                }
            )
            report = run_with_progress(inspector, request, quiet=json_out)
            if report.heatmap_png is not None:
                write_bytes(folder / f"heatmap_{name}.png", report.heatmap_png)
            write_bytes(
                folder / f"report_{name}.json",
                report.model_dump_json(indent=2, exclude={"heatmap_png"}).encode(),
            )
            if json_out:
                record = {
                    "case": name,
                    "truth": defect or "normal",
                    **report.model_dump(mode="json", exclude={"heatmap_png"}),
                }
                print(json.dumps(record))
            else:
                stdout.rule(f"{image_path.name}  (generated: {defect or 'no defect'})")
                print_report(report)
        if not json_out:
            stdout.print(f"\nimages, heatmaps and JSON reports in {folder}")
