"""Size and build time of the triage HTML report for N generated images, per thumbnail setting.

Writes N generated parts (washer, fabric, tile; a third with a defect) and a results file in the
issue-20 record format, then builds the page at each ``--thumb-px``:

    .venv/bin/python benchmarks/triage_report_size.py --images 500 --size 256 --thumb-px 64 96 128
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from riad_agent.data.synthetic import DEFECTS, generate_sample
from riad_agent.triage_html import render_triage_html

PRODUCTS = ("washer", "fabric", "tile")


def _results(folder: Path, count: int, size: int) -> Path:
    lines = []
    for index in range(count):
        product = PRODUCTS[index % 3]
        defect = DEFECTS[index % len(DEFECTS)] if index % 3 == 1 else None
        sample = generate_sample(f"synthetic/{product}", defect, seed=index, size=size)
        path = f"{product}/{defect or 'good'}/{index:04d}.png"
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        sample.image.save(folder / path)
        box = [int(v) for v in sample.bbox] if sample.bbox else None
        verdict = "anomalous" if defect else ("uncertain" if index % 50 == 0 else "normal")
        lines.append(
            {
                "image": str(folder / path),
                "path": path,
                "product": product,
                "product_guessed": True,
                "verdict": verdict,
                "reason": "the score is close to the threshold" if verdict == "uncertain" else None,
                "score": 0.9 if defect else (0.5 if verdict == "uncertain" else 0.1 + (index % 7) / 30),
                "threshold": 0.5,
                "regions": [{"box": box, "score": 0.9}] if box else [],
                "defect_type": defect,
                "type_confidence": 0.8 if defect else None,
                "size": [size, size],
                "reasoner": False,
                "heatmap": None,
                "error": None,
                "elapsed_ms": 100.0,
                "report": None,
            }
        )
    out = folder / "results.jsonl"
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--size", type=int, default=256, help="side of the generated images, px")
    parser.add_argument("--thumb-px", type=int, nargs="+", default=[64, 96, 128])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = _results(Path(tmp), args.images, args.size)
        for thumb_px in args.thumb_px:
            start = time.perf_counter()
            page = render_triage_html(results, thumb_px=thumb_px)
            seconds = time.perf_counter() - start
            size = len(page.encode("utf-8"))
            print(
                f"{args.images} images of {args.size} px, thumb_px {thumb_px}: {size / 1e6:.2f} MB "
                f"({size / args.images / 1e3:.1f} KB per image), built in {seconds:.1f} s"
            )


if __name__ == "__main__":
    main()
