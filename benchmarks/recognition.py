"""Product recognition and defect typing from the product memory: accuracy, unknown rejection, ms per call.

    python benchmarks/recognition.py [--queries 6] [--size 256] [--embed-size 256] [--threads 1] [--no-elpv] [--json]

Products: the generated washer, fabric, tile, bracket (fixed pose) and bracket-loose (the same part
at any angle), and, when the ``elpv-dataset`` wheel is importable, ELPV mono and poly solar cells.
Leave-one-family-out: each family in turn (bracket and bracket-loose are one family, the same part)
is held out, every other product is registered with 4 normal references, and the registry is
queried with ``--queries`` normal and ``--queries`` defective images of each registered product
(unseen seeds) and of the held-out family. Reported per acceptance threshold:

- accuracy: registered queries whose nearest product is right *and* accepted (bracket and
  bracket-loose count as each other: the same part); ``strict`` also needs the exact product;
- unknown rejection: held-out queries below the threshold.

Typing: each registered generated product gets 2 masked exemplars of scratch, stain, hole and
crack; defective queries of those types are typed by their nearest exemplar inside the true box.
Timings (median, one image at a time, embedded store), as an inspection runs them: the backbone
pass of the query that the expert makes in any case (``query_pass``, at the expert's input side),
then what recognition and typing add to it: the embedder's features of the query (``features``:
with ``--embed-size`` equal to the expert's side, the backbone's kept maps of that pass, else a
pass of its own), the products search (``recognise``) and the exemplar search of the true box
(``typing``); ``total`` is those three, the cost of typing + recognition per inspection.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from riad_agent.backbones import images_to_batch
from riad_agent.data.synthetic import generate_sample
from riad_agent.expert import FeatureConfig
from riad_agent.knowledge.local_store import LocalStore
from riad_agent.products import DEFAULT_THRESHOLD, ImageEmbedder, ProductFiles, ProductRegistry
from riad_agent.products.embedding import EMBED_SIZE, describe_box

GENERATED = ("washer", "fabric", "tile", "bracket", "bracket-loose")
FAMILY = {"bracket-loose": "bracket"}
POSE = {"tile": "fixed", "bracket": "fixed", "bracket-loose": "free", "washer": "free", "fabric": "free"}
DEFECTS = ("scratch", "stain", "hole", "crack", "colour")
TYPED = ("scratch", "stain", "hole", "crack")
#: Margins of the best defect type's similarity over the runner-up's, for the typing table.
TYPING_MARGINS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05)
THRESHOLDS = (0.85, 0.88, 0.90, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98)


def _family(name: str) -> str:
    return FAMILY.get(name, name)


def _elpv(count: int) -> dict[str, dict[str, list[Image.Image]]]:
    """ELPV cells per type: 4 normal references, ``count`` normal and ``count`` defective queries."""
    try:
        from elpv_dataset.utils import load_dataset
    except ImportError:
        return {}
    images, probabilities, types = load_dataset()
    out = {}
    for kind in ("mono", "poly"):
        rng = np.random.default_rng(7)
        normal = rng.permutation(np.flatnonzero((types == kind) & (probabilities == 0)))
        defective = rng.permutation(np.flatnonzero((types == kind) & (probabilities >= 0.5)))
        cell = [Image.fromarray(images[i]).convert("RGB") for i in normal[: 4 + count]]
        out[f"elpv-{kind}"] = {
            "references": cell[:4],
            "queries": cell[4:] + [Image.fromarray(images[i]).convert("RGB") for i in defective[:count]],
        }
    return out


def _generated(count: int, size: int) -> dict[str, dict[str, list[Image.Image]]]:
    out = {}
    for name in GENERATED:
        normal = [generate_sample(name, None, 1000 + s, size).image for s in range(count)]
        broken = [
            generate_sample(name, DEFECTS[s % len(DEFECTS)], 2000 + s, size).image for s in range(count)
        ]
        out[name] = {
            "references": [generate_sample(name, None, s, size).image for s in range(4)],
            "queries": normal + broken,
        }
    return out


EXPERT_SIDE = FeatureConfig().image_size


def _query_pass(embedder: ImageEmbedder, image: Image.Image) -> float:
    """ms of the backbone pass of ``image`` that the expert makes (kept by the backbone for the others)."""
    return _timed(embedder.backbone, images_to_batch([image], EXPERT_SIDE))[1]


def _timed(function: Any, *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = function(*args)
    return result, (time.perf_counter() - started) * 1000


def _fold(
    embedder: ImageEmbedder, products: dict[str, dict[str, list[Image.Image]]], held_out: str, size: int
) -> tuple[list[tuple[str, str | None, str | None, float, str]], list[Any], list[Any]]:
    """Rows (truth or 'unknown', nearest, its family, similarity, query family), (features, search) ms,
    typing rows (right, (features, search, typing) ms, top similarity, margin over the runner-up)."""
    rows, recognise_ms, typing = [], [], []
    with tempfile.TemporaryDirectory(prefix="riad-recognition-") as folder:
        root = Path(folder)
        registry = ProductRegistry(LocalStore(root / "qdrant"), ProductFiles(root / "products"), embedder)
        registered = [name for name in products if _family(name) != held_out]
        for name in registered:
            registry.add(name, products[name]["references"], pose=POSE.get(name))  # type: ignore[arg-type]
            if name in GENERATED:
                for seed in range(2):
                    for kind in TYPED:
                        sample = generate_sample(name, kind, 3000 + seed, size)
                        registry.add_defect(name, kind, sample.image, mask=sample.mask)
        for name, data in products.items():
            truth = name if name in registered else "unknown"
            for query in data["queries"]:
                pass_ms = _query_pass(embedder, query)
                features, ms = _timed(embedder.features, query)
                found, search_ms = _timed(registry.recognise, features)
                recognise_ms.append((ms, search_ms, pass_ms))
                rows.append(
                    (
                        truth,
                        found.nearest,
                        found.nearest and _family(found.nearest),
                        found.similarity,
                        _family(name),
                    )
                )
            if name in registered and name in GENERATED:
                for seed, kind in enumerate(TYPED):
                    sample = generate_sample(name, kind, 4000 + seed, size)
                    assert sample.bbox is not None
                    _query_pass(embedder, sample.image)
                    features, ms = _timed(embedder.features, sample.image)
                    _, search_ms = _timed(registry.recognise, features)
                    words = describe_box(sample.image, sample.mask, sample.bbox, refine=False)
                    matches, typing_ms = _timed(
                        registry.nearest_defects, name, features, sample.bbox, 3, words
                    )
                    right = bool(matches) and matches[0].defect_type == kind
                    top = matches[0].similarity if matches else 0.0
                    margin = top - matches[1].similarity if len(matches) > 1 else top
                    typing.append((right, (ms, search_ms, typing_ms), top, margin))
        registry.source.close()
    return rows, recognise_ms, typing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=6, help="normal and defective queries per product")
    parser.add_argument("--size", type=int, default=256, help="side of the generated images")
    parser.add_argument(
        "--embed-size",
        type=int,
        default=EMBED_SIZE,
        help="the embedder's input side (224 before it shared a pass)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-elpv", action="store_true", help="generated products only")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    products = _generated(args.queries, args.size)
    if not args.no_elpv:
        products.update(_elpv(args.queries))
    embedder = ImageEmbedder(image_size=args.embed_size)
    embedder.embed([products["washer"]["references"][0]])  # load and warm the backbone
    families = sorted({_family(name) for name in products})
    rows, recognise_ms, typing = [], [], []
    for held_out in families:
        more, ms, typed = _fold(embedder, products, held_out, args.size)
        rows += more
        recognise_ms += ms
        typing += typed

    known = [r for r in rows if r[0] != "unknown"]
    unknown = [r for r in rows if r[0] == "unknown"]
    table = []
    for threshold in THRESHOLDS:
        table.append(
            {
                "threshold": threshold,
                "accuracy": round(
                    sum(r[3] >= threshold and r[2] == _family(r[0]) for r in known) / len(known), 3
                ),
                "strict_accuracy": round(
                    sum(r[3] >= threshold and r[1] == r[0] for r in known) / len(known), 3
                ),
                "unknown_rejection": round(sum(r[3] < threshold for r in unknown) / len(unknown), 3),
            }
        )
    lowest_unknown = max(r[3] for r in unknown)
    lowest_known = min(r[3] for r in known if r[2] == _family(r[0]))
    report = {
        "products": sorted(products),
        "registered_queries": len(known),
        "unknown_queries": len(unknown),
        "nearest_right": round(sum(r[2] == _family(r[0]) for r in known) / len(known), 3),
        "lowest_right_similarity": round(lowest_known, 4),
        "highest_unknown_similarity": round(lowest_unknown, 4),
        "default_threshold": DEFAULT_THRESHOLD,
        "by_threshold": table,
        "accepted_right_by_product": {
            name: round(
                sum(r[3] >= DEFAULT_THRESHOLD and r[2] == _family(r[0]) for r in known if r[0] == name)
                / max(1, sum(r[0] == name for r in known)),
                3,
            )
            for name in sorted(products)
        },
        "unknown_rejected_by_product": {
            family: round(
                sum(r[3] < DEFAULT_THRESHOLD for r in unknown if r[4] == family)
                / max(1, sum(r[4] == family for r in unknown)),
                3,
            )
            for family in families
        },
        "typing_accuracy": round(sum(row[0] for row in typing) / len(typing), 3),
        "typing_by_margin": [
            {
                "margin": margin,
                "typed": round(sum(row[3] >= margin for row in typing) / len(typing), 3),
                "right_when_typed": round(
                    sum(row[0] for row in typing if row[3] >= margin)
                    / max(1, sum(row[3] >= margin for row in typing)),
                    3,
                ),
            }
            for margin in TYPING_MARGINS
        ],
        "typing_queries": len(typing),
        "query_pass_ms_median": round(statistics.median(ms[2] for ms in recognise_ms), 1),
        "features_ms_median": round(statistics.median(ms[0] for ms in recognise_ms), 1),
        "recognise_search_ms_median": round(statistics.median(ms[1] for ms in recognise_ms), 1),
        "typing_search_ms_median": round(statistics.median(row[1][2] for row in typing), 1),
        "total_ms_median": round(statistics.median(sum(row[1]) for row in typing), 1),
        "embedder": embedder.embedder_id,
        "threads": args.threads,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        if key != "by_threshold":
            print(f"{key}: {value}")
    print("threshold  accuracy  strict  unknown rejection")
    for line in table:
        print(
            f"{line['threshold']:9.2f}  {line['accuracy']:8.3f}  {line['strict_accuracy']:6.3f}  "
            f"{line['unknown_rejection']:17.3f}"
        )
    misses = [r for r in unknown if r[3] >= DEFAULT_THRESHOLD]
    for row in sorted(misses, key=lambda r: -r[3])[:5]:
        print(f"accepted unknown at {DEFAULT_THRESHOLD}: nearest {row[1]} ({row[3]:.3f})")


if __name__ == "__main__":
    main()
