"""Knowledge search latency over the whole packaged base in embedded mode, as JSON.

For each mode (dense, sparse, hybrid) it times the search with the query embedding included
(``kb.search``) and excluded (``kb.search_encoded`` on pre-encoded queries), unfiltered.

    python benchmarks/knowledge_search.py [--repeats 5] [--embedder minilm|hashing] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

QUERIES = [
    "dark thin crack across the shell",
    "missing wick in the centre of a candle",
    "scratch on the metal surface",
    "the cable has a wire with the wrong colour insulation",
    "small hole in the fabric",
    "bent lead on the transistor",
    "print on the pill surface",
    "the zipper teeth are broken",
    "burnt spot on the snack",
    "solder missing on the circuit board",
    "liquid stain on the wood",
    "thread damaged at the tip of the screw",
]


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered), 3), "p95_ms": round(p95, 3), "n": len(ordered)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="Passes over the query list.")
    parser.add_argument("--embedder", default="minilm", help="minilm (default) or hashing.")
    parser.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from riad_agent.knowledge.factory import open_knowledge_base
    from riad_agent.settings import Settings

    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=Path(data_dir), qdrant_url=None, embedder=args.embedder)
        started = time.perf_counter()
        kb = open_knowledge_base(settings)
        ingest_s = time.perf_counter() - started
        try:
            points = sum(1 + len(c.defect_types) for c in kb.list_categories())
            for query in QUERIES[:3]:  # warm-up: model load, caches
                kb.search(query, mode="hybrid")
            result: dict[str, object] = {
                "embedder": kb.embedder.model_id,
                "points": points,
                "categories": len(kb.categories()),
                "ingest_s": round(ingest_s, 2),
                "queries": len(QUERIES) * args.repeats,
                "modes": {},
            }
            modes: dict[str, dict[str, object]] = {}
            for mode in ("dense", "sparse", "hybrid"):
                encoded = {q: kb.encode_query(q, mode) for q in QUERIES}
                with_embed: list[float] = []
                without_embed: list[float] = []
                for _ in range(args.repeats):
                    for query in QUERIES:
                        t0 = time.perf_counter()
                        kb.search(query, k=4, mode=mode)
                        with_embed.append((time.perf_counter() - t0) * 1000)
                        t0 = time.perf_counter()
                        kb.search_encoded(encoded[query], k=4, mode=mode)
                        without_embed.append((time.perf_counter() - t0) * 1000)
                modes[mode] = {
                    "embedding_included": _percentiles(with_embed),
                    "embedding_excluded": _percentiles(without_embed),
                }
            result["modes"] = modes
        finally:
            kb.close()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
