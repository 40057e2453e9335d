"""``riad triage`` refusing an output it must not touch: one typed line on stderr, its exit code, file as it was."""

from __future__ import annotations

import csv
import fcntl
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

RIAD = str(Path(sys.executable).with_name("riad"))


def _run(tmp_path: Path, out: Path) -> subprocess.CompletedProcess[str]:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    Image.new("RGB", (64, 64), (90, 90, 90)).save(images / "a.png")
    return subprocess.run(
        [RIAD, "triage", str(images), "--out", str(out), "--no-reasoner"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "RIAD_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)},
    )


def test_notes_file_as_out_is_refused_and_kept(tmp_path: Path) -> None:
    out = tmp_path / "notes.txt"
    out.write_text("ideas for the line\nbuy more lamps\n")
    result = _run(tmp_path, out)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"ResultsFileError: {out} line 1 is not JSON")
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert out.read_text() == "ideas for the line\nbuy more lamps\n"


def test_a_second_run_on_the_same_out_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    with open(f"{out}.lock", "a+b") as handle:  # a first run holding the results file
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = _run(tmp_path, out)
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        f"ResultsLockedError: another triage run is writing to {out}"
    )
    assert "Traceback" not in result.stderr and not out.exists()


def _riad(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RIAD, "triage", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "RIAD_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)},
    )


def test_fail_on_gates_the_exit_code_and_format_writes_a_table(tmp_path: Path) -> None:
    from riad_agent.data.synthetic import generate_sample

    images, references = tmp_path / "images", tmp_path / "references"
    images.mkdir()
    references.mkdir()
    for seed in range(4):
        generate_sample("synthetic/washer", None, seed, 128).image.save(references / f"ref{seed}.png")
    generate_sample("synthetic/washer", "hole", 40, 128).image.save(images / "holed.png")
    generate_sample("synthetic/washer", None, 41, 128).image.save(images / "good.png")
    out = tmp_path / "results.jsonl"
    common = [str(images), "--out", str(out), "--reference-dir", str(references), "--no-reasoner"]

    gated = _riad(tmp_path, *common, "--fail-on", "anomalous", "--format", "csv")
    assert gated.returncode == 4, gated.stderr
    assert "gate: 1 image(s) tripped --fail-on anomalous" in gated.stderr
    summary = json.loads(gated.stdout.strip().splitlines()[-1])
    assert summary["anomalous"] == 1 and summary["normal"] == 1
    rows = {row["path"]: row for row in csv.DictReader((tmp_path / "results.csv").open())}
    assert rows["holed.png"]["verdict"] == "anomalous" and rows["good.png"]["verdict"] == "normal"

    passed = _riad(tmp_path, *common)  # resumed: nothing new, no gate asked
    assert passed.returncode == 0, passed.stderr
    assert json.loads(passed.stdout.strip().splitlines()[-1])["skipped"] == 2


def test_uncertain_gate_counts_images_it_cannot_judge(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 64), (90, 90, 90)).save(images / "a.png")  # no references, no products: uncertain
    out = tmp_path / "results.jsonl"
    lenient = _riad(tmp_path, str(images), "--out", str(out), "--reasoner", "never", "--fail-on", "anomalous")
    assert lenient.returncode == 0, lenient.stderr
    strict = _riad(tmp_path, str(images), "--out", str(out), "--reasoner", "never", "--fail-on", "uncertain")
    assert strict.returncode == 4 and "gate: 1 image(s)" in strict.stderr
    record = json.loads(out.read_text().splitlines()[0])
    assert record["verdict"] == "uncertain" and "no registered product" in record["reason"]


def test_contradicting_options_are_refused(tmp_path: Path) -> None:
    result = _riad(tmp_path, str(tmp_path), "--no-reasoner", "--reasoner", "always")
    assert result.returncode == 2 and "InvalidRequestError: --no-reasoner contradicts" in result.stderr
    both = _riad(tmp_path, str(tmp_path), "--watch", str(tmp_path))
    assert both.returncode == 2 and "one of them" in both.stderr
