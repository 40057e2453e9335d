"""Resident memory of one process running many inspections with the default Inspector, as JSON.

    python benchmarks/memory.py                                   # 12 inspections, one reference set
    python benchmarks/memory.py --count 300 --reference-sets 12 --warmup 24 --no-reasoner
    python benchmarks/memory.py --count 40 --trace 15             # + the 15 largest tracemalloc growths

Generates synthetic parts (``riad_agent.data.synthetic``) into a temporary data dir, builds one
``Inspector()`` from default settings (``RIAD_*`` still apply; the hashing embedder unless
``RIAD_EMBEDDER`` says otherwise) and inspects ``--count`` images in turn, cycling through
``--reference-sets`` sets of normal references (each set a category and seeds of its own, so the
expert builds one memory bank per set). RSS (``/proc/self/statm``) is sampled after a
``gc.collect()`` before the first inspection, after ``--warmup`` inspections and then every
``--every``; the result is the growth after warm-up, in MB in all and per inspection. With
``--trace N`` tracemalloc compares the Python heap after warm-up with the end (torch's and
numpy's C allocations are not in it, only Python objects and the buffers Python allocates).
``--heatmap`` asks for the heatmap overlay as the agent tools do.
``--no-reasoner`` runs expert and knowledge only (``use_reasoner=False``); otherwise the builtin
reasoner with ``--steps`` latent iterations.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from riad_agent.data.synthetic import CATEGORIES, generate_sample


def rss_mb() -> float:
    """Resident set size of this process in MB."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def reference_sets(root: Path, count: int, per_set: int, size: int) -> list[tuple[str, list[str]]]:
    """``count`` (category, reference paths) sets, each with seeds of its own."""
    sets = []
    for index in range(count):
        category = CATEGORIES[index % len(CATEGORIES)]
        folder = root / f"set{index}"
        folder.mkdir(parents=True)
        paths = []
        for number in range(per_set):
            path = folder / f"good_{number}.png"
            generate_sample(category, None, seed=1000 * (index + 1) + number, size=size).image.save(path)
            paths.append(str(path))
        sets.append((category, paths))
    return sets


def queries(root: Path, sets: list[tuple[str, list[str]]], size: int) -> list[str]:
    """One defective and one normal query per reference set."""
    root.mkdir(parents=True)
    paths = []
    for index, (category, _) in enumerate(sets):
        for defect in ("hole", None):
            path = root / f"query{index}_{defect or 'normal'}.png"
            generate_sample(category, defect, seed=50_000 + index, size=size).image.save(path)
            paths.append(str(path))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=12, help="inspections after warm-up")
    parser.add_argument("--warmup", type=int, default=2, help="inspections before the baseline sample")
    parser.add_argument(
        "--reference-sets", type=int, default=1, help="reference sets inspections cycle through"
    )
    parser.add_argument("--references", type=int, default=4, help="normal references per set")
    parser.add_argument("--size", type=int, default=256, help="side of the generated images in px")
    parser.add_argument("--every", type=int, default=0, help="sample RSS every N inspections (0: count / 10)")
    parser.add_argument("--no-reasoner", action="store_true", help="expert and knowledge only")
    parser.add_argument("--steps", type=int, default=1, help="latent iterations of the builtin reasoner")
    parser.add_argument("--heatmap", action="store_true", help="ask for the heatmap, as the agent tools do")
    parser.add_argument("--trace", type=int, default=0, help="print the N largest tracemalloc growths")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="riad-memory-") as scratch:
        root = Path(scratch)
        os.environ.setdefault("RIAD_DATA_DIR", str(root / "data"))
        os.environ.setdefault("RIAD_EMBEDDER", "hashing")
        from riad_agent.inspector import Inspector
        from riad_agent.schemas import InspectionRequest

        sets = reference_sets(root / "refs", args.reference_sets, args.references, args.size)
        images = queries(root / "queries", sets, args.size)
        inspector = Inspector()
        every = args.every or max(1, args.count // 10)

        def request(number: int) -> InspectionRequest:
            category, references = sets[number % len(sets)]
            return InspectionRequest(
                image=images[2 * (number % len(sets)) + (number // len(sets)) % 2],
                category=category,
                references=references,
                options={
                    "use_reasoner": not args.no_reasoner,
                    "latent_steps": args.steps,
                    "seed": number,
                    "return_heatmap": args.heatmap,
                },
            )

        gc.collect()
        samples: list[dict[str, Any]] = [{"done": 0, "rss_mb": round(rss_mb(), 1)}]
        started = time.perf_counter()
        degraded: dict[str, int] = {}
        for number in range(args.warmup):
            inspector.inspect(request(number))
        gc.collect()
        baseline = rss_mb()
        samples.append({"done": args.warmup, "rss_mb": round(baseline, 1)})
        if args.trace:
            tracemalloc.start(12)
            snapshot = tracemalloc.take_snapshot()
        for number in range(args.warmup, args.warmup + args.count):
            report = inspector.inspect(request(number))
            for entry in report.degraded:
                degraded[entry] = degraded.get(entry, 0) + 1
            done = number + 1 - args.warmup
            if done % every == 0 or done == args.count:
                gc.collect()
                samples.append({"done": number + 1, "rss_mb": round(rss_mb(), 1)})
        growth = samples[-1]["rss_mb"] - baseline
        result = {
            "benchmark": "memory",
            "count": args.count,
            "warmup": args.warmup,
            "reference_sets": args.reference_sets,
            "references": args.references,
            "size": args.size,
            "reasoner": None if args.no_reasoner else {"steps": args.steps},
            "heatmap": args.heatmap,
            "checkpointer": type(inspector.graph.checkpointer).__name__
            if inspector.graph.checkpointer
            else None,
            "rss_start_mb": samples[0]["rss_mb"],
            "rss_after_warmup_mb": round(baseline, 1),
            "rss_end_mb": samples[-1]["rss_mb"],
            "growth_after_warmup_mb": round(growth, 1),
            "growth_per_inspection_mb": round(growth / max(args.count, 1), 3),
            "degraded": degraded,
            "seconds": round(time.perf_counter() - started, 1),
            "samples": samples,
            "python": platform.python_version(),
        }
        if args.trace:
            stats = tracemalloc.take_snapshot().compare_to(snapshot, "traceback")
            result["tracemalloc_top"] = [
                {
                    "kb": round(stat.size_diff / 1024, 1),
                    "count": stat.count_diff,
                    "where": stat.traceback.format()[-6:],
                }
                for stat in stats[: args.trace]
            ]
        text = json.dumps(result, indent=2)
        print(text)
        if args.out is not None:
            args.out.write_text(text + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
