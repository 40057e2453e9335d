"""An MLOps triage job: inspect a folder of images, then act on the anomalies.

    python examples/mlops_triage.py IMAGES_DIR --reference-dir GOOD_DIR --out results.jsonl

Resumable: run it again after a crash and it continues where it stopped. Anomalous images are
quarantined, uncertain ones (with the reason) go to a person, and a pattern across the batch (most
flagged images peaking at one place) is printed as a caution. Exit code 1 when any image is
anomalous or uncertain, so a pipeline step can gate on it.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from riad_agent.components import build_components
from riad_agent.graphs.triage import IMAGE_SUFFIXES, TriageJob, TriageSummary, build_triage_graph, run_triage
from riad_agent.graphs.triage_results import read_records
from riad_agent.settings import load_settings
from riad_agent.triage_html import write_triage_html


async def triage_folder(
    images: Path, references: list[Path], out: Path, category: str | None = None, components: object = None
) -> tuple[TriageSummary, list[dict[str, object]], list[dict[str, object]]]:
    """Run the triage; return the summary, the anomalous records (worst first) and the uncertain ones."""
    graph = build_triage_graph(components=components or build_components(load_settings()))
    summary = await run_triage(
        TriageJob(images=images, out=out, references=references, category=category), graph
    )
    records = read_records(out)  # each image's last line; a torn last line is left out
    anomalies = [r for r in records if r.get("verdict") == "anomalous"]
    anomalies.sort(key=lambda r: -float(r["score"]))
    uncertain = [r for r in records if r.get("verdict") == "uncertain"]
    write_triage_html(out, out.with_suffix(".html"))
    return summary, anomalies, uncertain


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path)
    parser.add_argument("--reference-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("results.jsonl"))
    parser.add_argument("--category")
    args = parser.parse_args()
    references = sorted(
        path for path in args.reference_dir.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES
    )
    summary, anomalies, uncertain = asyncio.run(
        triage_folder(args.images, references, args.out, args.category)
    )
    print(summary.model_dump_json())
    for caution in summary.cautions:
        print(f"CAUTION {caution}")
    for record in anomalies:
        kind = record.get("defect_type") or "type not stated"
        print(f"QUARANTINE {record['path']} score={record['score']:.2f} ({kind})")
    for record in uncertain:
        print(f"REVIEW {record['path']} score={record['score']:.2f} ({record.get('reason') or 'uncertain'})")
    return 1 if anomalies or uncertain else 0


if __name__ == "__main__":
    raise SystemExit(main())
