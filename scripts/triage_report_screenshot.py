"""Make docs/images/triage_report.png: a real `riad triage` run on generated parts, its HTML page, headless Chromium.

Three generated products (washer, fabric, tile) are registered from their normal images with one
labelled exemplar per defect type; the triaged folder holds their test images, two parts of a product
nobody registered (uncertain), a file name with ``<``, ``&`` and quotes, and a file that is not an
image. Everything runs through the ``riad`` CLI with its own data folder, as a user would.

    .venv/bin/python scripts/triage_report_screenshot.py [--work /tmp/riad-triage-shot] [--out docs/images/triage_report.png]

Needs Debian's chromium (``apt-get install -y chromium``). Takes about 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from riad_agent.data.synthetic import generate_sample, write_mvtec_layout

PRODUCTS = ("washer", "fabric", "tile")
DEFECTS = ("scratch", "hole", "stain", "crack")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def _riad(env: dict[str, str], *args: str) -> str:
    riad = Path(sys.executable).with_name("riad")
    done = subprocess.run([str(riad), *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"riad {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def _prepare(work: Path, env: dict[str, str]) -> Path:
    """Register the products and fill the folder to triage; returns the folder."""
    categories = tuple(f"synthetic/{name}" for name in PRODUCTS)
    data = write_mvtec_layout(
        work / "generated", categories, n_train=8, n_test_good=5, n_test_per_defect=2, seed=3, defects=DEFECTS
    )
    exemplars = write_mvtec_layout(
        work / "exemplars",
        categories,
        n_train=0,
        n_test_good=0,
        n_test_per_defect=1,
        seed=11,
        defects=DEFECTS,
    )
    line = work / "line"
    for name in PRODUCTS:
        _riad(env, "product", "add", name, "--good", str(data / name / "train" / "good"))
        for defect in DEFECTS:
            image = exemplars / name / "test" / defect / "000.png"
            mask = exemplars / name / "ground_truth" / defect / "000_mask.png"
            _riad(env, "product", "add-defect", name, str(image), "--type", defect, "--mask", str(mask))
        shutil.copytree(data / name / "test", line / name)
    shutil.copy(
        data / "washer" / "test" / "scratch" / "001.png", line / "washer" / "scratch" / 'odd <name> & "q".png'
    )
    (line / "unsorted").mkdir()
    generate_sample("synthetic/bracket", None, 5).image.save(line / "unsorted" / "part_017.png")
    generate_sample("synthetic/bracket", "scratch", 6).image.save(line / "unsorted" / "part_018.png")
    (line / "tile" / "broken.png").write_bytes(b"not a png")
    return line


def _screenshot(page: Path, png: Path, size: str) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
             f"--window-size={size}", page.resolve().as_uri()],
            capture_output=True, check=True, timeout=120,
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "riad-triage-shot")
    parser.add_argument("--out", type=Path, default=Path("docs/images/triage_report.png"))
    parser.add_argument("--window", default="1400,1000")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    env = {**os.environ, "RIAD_DATA_DIR": str(args.work / "data")}
    line = _prepare(args.work, env)
    results, page = args.work / "results.jsonl", args.work / "report.html"
    print(
        _riad(env, "triage", str(line), "--no-reasoner", "--out", str(results), "--html", str(page)).strip()
    )
    raw = args.work / "raw.png"
    _screenshot(page, raw, args.window)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # a palette of 256 colours keeps the picture sharp at a fraction of the bytes
    Image.open(raw).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
        args.out, optimize=True
    )
    print(f"{page}: {page.stat().st_size / 1024:.0f} KB; {args.out}: {args.out.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
