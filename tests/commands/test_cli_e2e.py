"""`riad inspect` and `riad demo` end to end: the real expert, knowledge base and builtin reasoner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from riad_agent.data.synthetic import generate_sample
from riad_agent.settings import Settings

RIAD = str(Path(sys.executable).with_name("riad"))


def _env(tmp: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "RIAD_DATA_DIR": str(tmp / "data"),
        "RIAD_EMBEDDER": "hashing",  # the plumbing, not retrieval quality, is under test here
        "HF_HUB_OFFLINE": "1",
        # the converted builtin language model is shared with the other tests (one conversion per machine)
        "RIAD_MODEL_CACHE_DIR": str(Settings().model_cache_dir),
    }


def test_inspect_finds_the_generated_defect(tmp_path: Path) -> None:
    refs = tmp_path / "refs"
    refs.mkdir()
    for index in range(4):
        generate_sample("synthetic/washer", None, seed=10 + index).image.save(refs / f"good_{index}.png")
    sample = generate_sample("synthetic/washer", "hole", seed=99)
    sample.image.save(tmp_path / "part.png")
    heatmap = tmp_path / "heat.png"
    result = subprocess.run(
        [
            RIAD,
            "inspect",
            str(tmp_path / "part.png"),
            "--category",
            "washer",
            "--reference-dir",
            str(refs),
            "--json",
            "--heatmap",
            str(heatmap),
            "--reasoner",
            "always",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["verdict"] == "anomalous" and report["anomaly_score"] > 0.5
    assert report["category"] == "synthetic/washer"
    assert sample.bbox is not None
    x0, y0, x1, y1 = sample.bbox
    top = max(report["regions"], key=lambda r: r["score"])
    assert top["x0"] < x1 and x0 < top["x1"] and top["y0"] < y1 and y0 < top["y1"]  # overlaps the defect
    assert report["knowledge"] and all(k["id"].startswith("synthetic/washer/") for k in report["knowledge"])
    assert report["degraded"] == []  # the builtin VLM ran the latent loop
    assert report["models"]["reasoner"] == "riad-builtin-v1" and report["trace"]["iterations"]
    assert report["models"]["expert"].startswith("efficientnet-lite0")
    assert Image.open(heatmap).size == sample.image.size


def test_demo_runs_the_graph_on_generated_parts(tmp_path: Path) -> None:
    result = subprocess.run(
        [RIAD, "demo", "--out", str(tmp_path / "demo"), "--references", "4", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    verdicts = {r["case"]: r["verdict"] for r in records}
    assert verdicts == {"normal": "normal", "scratch": "anomalous", "hole": "anomalous"}
    assert all(r["degraded"] == [] and r["models"]["reasoner"] == "riad-builtin-v1" for r in records)
    assert all(r["trace"]["iterations"] for r in records)  # the latent loop ran on every image
    assert (tmp_path / "demo" / "heatmap_hole.png").is_file()
    assert (tmp_path / "demo" / "report_scratch.json").is_file()
