"""How long a triage run takes to check a large results file before it starts (and the HTML page to read it).

    python benchmarks/triage_results_read.py --lines 100000

Writes a JSONL of ``--lines`` records about the size of real ones (~1.6 KB: report, regions, an
explanation) to a temporary folder, then times ``read_outcomes`` (what every run does under the lock)
and ``read_records`` (what the HTML page does). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from riad_agent.graphs.triage_results import read_outcomes, read_records


def _line(index: int) -> str:
    verdict = ("anomalous", "normal", "normal", "uncertain")[index % 4]
    report = {
        "schema_version": "1",
        "verdict": verdict,
        "anomaly_score": (index % 100) / 100,
        "category": "synthetic/washer",
        "regions": [
            {"x0": 10 * k, "y0": 12 * k, "x1": 10 * k + 40, "y1": 12 * k + 30, "score": 0.7} for k in range(4)
        ],
        "explanation": "The part shows a thin bright line across the ring, unlike the references. " * 14,
        "citations": [{"id": f"washer-{k}", "score": 0.5} for k in range(3)],
        "timings_ms": {"expert": 812.5, "knowledge": 40.1, "reasoning": 0.0},
    }
    record = {
        "image": f"/data/line-7/img_{index:07d}.png",
        "report": report,
        "heatmap": None,
        "elapsed_ms": 930.2,
    }
    return json.dumps(record, separators=(",", ":")) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "results.jsonl"
        with out.open("w", encoding="utf-8") as handle:
            handle.writelines(_line(index) for index in range(args.lines))
        figures: dict[str, float | int] = {"lines": args.lines, "mb": round(out.stat().st_size / 1e6, 1)}
        for name, read in (("read_outcomes_s", read_outcomes), ("read_records_s", read_records)):
            start = time.perf_counter()
            count = len(read(out))
            figures[name] = round(time.perf_counter() - start, 2)
            assert count == args.lines
        figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
