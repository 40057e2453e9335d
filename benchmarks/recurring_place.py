"""How tightly do a triage run's anomalous images gather at one place? (riad_agent.triage_recurring)

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/recurring_place.py RESULTS.jsonl [RESULTS.jsonl ...]

For each results file of `riad triage` and each product in it: the anomalous images, how many peak
in the fullest window of the rule's grid, their share, and whether the shipped rule (at least
``MIN_IMAGES`` and ``MIN_SHARE`` of the anomalous) names the place. Feed it runs whose flagged images
are known: good parts only (every flag a false alarm: a cluster is normal variation the references
lack) and defects at random places (a cluster would be a false caution). One JSON line per product.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from riad_agent.graphs.triage_results import read_records
from riad_agent.triage_recurring import MIN_IMAGES, MIN_SHARE, densest_place, recurring_places
from riad_agent.triage_view import rows_from_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.results:
        rows = rows_from_records(read_records(path))
        named = {place.product for place in recurring_places(rows)}
        for product in sorted({row.product for row in rows}, key=lambda p: (p is None, p or "")):
            inside, anomalous = densest_place([row for row in rows if row.product == product])
            print(
                json.dumps(
                    {
                        "results": str(path),
                        "product": product,
                        "anomalous": anomalous,
                        "at_one_place": len(inside),
                        "share": round(len(inside) / anomalous, 3) if anomalous else None,
                        "named": product in named,
                        "rule": f">= {MIN_IMAGES} and >= {MIN_SHARE} of the anomalous",
                    }
                )
            )


if __name__ == "__main__":
    main()
