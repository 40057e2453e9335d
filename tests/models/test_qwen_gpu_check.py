"""The prepared GPU check (benchmarks/gpu_check.py) runs end to end on the CPU with the tiny model."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def test_cpu_run_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    command = [
        sys.executable,
        str(SCRIPT),
        "--device",
        "cpu",
        "--requests",
        "2",
        "--steps",
        "1",
        "--image",
        "32",
    ]
    done = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["model"] == "tiny-qwen2_5_vl"
    assert report["agreement"] == {
        "requests": 2,
        "same_answer": 2,
        "max_probability_gap": report["agreement"]["max_probability_gap"],
        "errors": [],
    }
    assert report["agreement"]["max_probability_gap"] < 1e-3
    assert set(report["stages_ms"]) >= {"prefix_ms", "latent_ms", "decode_ms"}
    assert report["loop_speedup"]["rows"] == 9 and report["batched"]["batched_per_s"] > 0
    assert report["peak_memory_mb"] is None


def test_the_7b_architecture_builds_from_its_published_sizes() -> None:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    vlm = module.build_random_7b(torch.device("meta"), max_pixels=1280 * 28 * 28)  # no memory: meta tensors
    assert vlm.hidden_size == 3584 and vlm.num_layers == 28
    params = sum(p.numel() for p in vlm.model.parameters())
    assert 8.0e9 < params < 8.5e9  # Qwen2.5-VL-7B: 8.29 B parameters
