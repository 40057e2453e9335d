"""``riad triage`` refusing an output it must not touch: one typed line on stderr, its exit code, file as it was."""

from __future__ import annotations

import fcntl
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
