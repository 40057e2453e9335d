"""Knowledge search latency over the whole packaged base in embedded mode, as JSON.

For each mode (dense, sparse, hybrid) it times the search with the query embedding included
(``kb.search``) and excluded (``kb.search_encoded`` on pre-encoded queries), unfiltered; hybrid also
with a category filter (``hybrid_filtered``, categories taken in turn). ``hybrid_paths`` times, query
by query in the same run, hybrid search with the sparse search overlapping the query embedding
(``kb.search``) against embedding first and searching after (``search_encoded(encode_query(q))``),
filter off and on. With MiniLM, hybrid search is also timed with the torch query encoder in place of
the default onnxruntime one, interleaved the same way (``query_encoders``: p50s and their ratio).
The load average before and after is recorded: the timings mean little on a busy machine.

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


def _compare_query_encoders(kb: object, repeats: int) -> dict[str, object]:
    """Hybrid search p50 with the onnxruntime and the torch query encoder, side by side."""
    from riad_agent.knowledge.embed import MiniLMEmbedder

    fast = kb.embedder  # type: ignore[attr-defined]
    slow = MiniLMEmbedder()
    slow.embed(QUERIES[:2])  # warm-up
    timings: dict[str, list[float]] = {"onnxruntime": [], "torch": []}
    try:
        for _ in range(repeats):
            for query in QUERIES:
                for name, embedder in (("onnxruntime", fast), ("torch", slow)):
                    kb.embedder = embedder  # type: ignore[attr-defined]
                    t0 = time.perf_counter()
                    kb.search(query, k=4, mode="hybrid")  # type: ignore[attr-defined]
                    timings[name].append((time.perf_counter() - t0) * 1000)
    finally:
        kb.embedder = fast  # type: ignore[attr-defined]
    onnx_p50 = statistics.median(timings["onnxruntime"])
    torch_p50 = statistics.median(timings["torch"])
    return {
        "hybrid_onnxruntime": _percentiles(timings["onnxruntime"]),
        "hybrid_torch": _percentiles(timings["torch"]),
        "torch_over_onnxruntime": round(torch_p50 / onnx_p50, 2),
    }


def _compare_hybrid_paths(kb: object, categories: list[str], repeats: int) -> dict[str, object]:
    """Hybrid search overlapped with the embedding vs embedding then search, interleaved."""
    timings: dict[str, list[float]] = {name: [] for name in ("overlapped", "sequential")}
    timings |= {f"{name}_filtered": [] for name in ("overlapped", "sequential")}
    for _ in range(repeats):
        for index, query in enumerate(QUERIES):
            for category in (None, categories[index % len(categories)]):
                suffix = "_filtered" if category else ""
                t0 = time.perf_counter()
                kb.search(query, category=category, k=4, mode="hybrid")  # type: ignore[attr-defined]
                timings["overlapped" + suffix].append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                encoded = kb.encode_query(query, "hybrid")  # type: ignore[attr-defined]
                kb.search_encoded(encoded, category=category, k=4, mode="hybrid")  # type: ignore[attr-defined]
                timings["sequential" + suffix].append((time.perf_counter() - t0) * 1000)
    result: dict[str, object] = {name: _percentiles(samples) for name, samples in timings.items()}
    for suffix in ("", "_filtered"):
        ratio = statistics.median(timings["sequential" + suffix]) / statistics.median(
            timings["overlapped" + suffix]
        )
        result["sequential_over_overlapped" + suffix] = round(ratio, 2)
    return result


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text(encoding="utf-8").strip()
    except OSError:
        return "unknown"


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
                "loadavg_before": _loadavg(),
                "embedder": kb.embedder.model_id,
                "points": points,
                "categories": len(kb.categories()),
                "ingest_s": round(ingest_s, 2),
                "queries": len(QUERIES) * args.repeats,
                "modes": {},
            }
            categories = kb.categories()
            modes: dict[str, dict[str, object]] = {}
            for mode, filtered in (("dense", False), ("sparse", False), ("hybrid", False), ("hybrid", True)):
                encoded = {q: kb.encode_query(q, mode) for q in QUERIES}
                with_embed: list[float] = []
                without_embed: list[float] = []
                for _ in range(args.repeats):
                    for index, query in enumerate(QUERIES):
                        category = categories[index % len(categories)] if filtered else None
                        t0 = time.perf_counter()
                        kb.search(query, category=category, k=4, mode=mode)
                        with_embed.append((time.perf_counter() - t0) * 1000)
                        t0 = time.perf_counter()
                        kb.search_encoded(encoded[query], category=category, k=4, mode=mode)
                        without_embed.append((time.perf_counter() - t0) * 1000)
                modes[mode + ("_filtered" if filtered else "")] = {
                    "embedding_included": _percentiles(with_embed),
                    "embedding_excluded": _percentiles(without_embed),
                }
            result["modes"] = modes
            result["hybrid_paths"] = _compare_hybrid_paths(kb, categories, args.repeats)
            if args.embedder == "minilm":
                result["query_encoders"] = _compare_query_encoders(kb, args.repeats)
            result["loadavg_after"] = _loadavg()
        finally:
            kb.close()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
