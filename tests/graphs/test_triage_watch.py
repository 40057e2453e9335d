"""``riad triage --watch``: new files are triaged once complete, a restart (even after kill -9) neither
loses nor repeats an image, and SIGINT/SIGTERM end it with exit code 0 and the lock released."""

from __future__ import annotations

import fcntl
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from support.fakes import part_image

SUPPORT = Path(__file__).resolve().parents[1] / "support"


def _lines(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def _wait_for_lines(out: Path, count: int, process: subprocess.Popen[bytes], limit_s: float = 90) -> None:
    deadline = time.monotonic() + limit_s
    while len(_lines(out)) < count:
        assert process.poll() is None, process.communicate()[1].decode()
        assert time.monotonic() < deadline, f"{len(_lines(out))} of {count} lines"
        time.sleep(0.05)


def _start(folder: Path, out: Path, reference: Path, delay: float) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        str(SUPPORT / "fake_watch.py"),
        str(folder),
        str(out),
        str(reference),
        str(delay),
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _stop(process: subprocess.Popen[bytes], number: signal.Signals) -> dict[str, object]:
    process.send_signal(number)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()
    summary: dict[str, object] = json.loads(stdout.decode().strip().splitlines()[-1])
    return summary


def _lock_is_free(out: Path) -> bool:
    with open(f"{out}.lock", "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def _png(seed: int, size: int = 256) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_dropped_files_are_read_only_when_complete_and_sigterm_exits_cleanly(tmp_path: Path) -> None:
    folder, out, reference = tmp_path / "live", tmp_path / "results.jsonl", tmp_path / "reference.png"
    folder.mkdir()
    part_image(False, seed=99).save(reference)
    process = _start(folder, out, reference, 0.0)
    try:
        # the documented way: write under a hidden name, rename when done; the half file is never read
        data = _png(1)
        hidden = folder / ".first.png"
        hidden.write_bytes(data[: len(data) // 2])
        time.sleep(1.0)
        assert _lines(out) == []
        with hidden.open("ab") as handle:
            handle.write(data[len(data) // 2 :])
        hidden.rename(folder / "first.png")
        _wait_for_lines(out, 1, process)
        # a writer that writes in place, in pieces: read once its size and time stop changing
        data = _png(2)
        with (folder / "second.png").open("wb") as handle:
            for start in range(0, len(data), len(data) // 10):
                handle.write(data[start : start + len(data) // 10])
                handle.flush()
                time.sleep(0.02)
        _wait_for_lines(out, 2, process)
    finally:
        summary = _stop(process, signal.SIGTERM)
    records = _lines(out)
    assert [Path(str(r["image"])).name for r in records] == ["first.png", "second.png"]
    assert all(r["error"] is None and r["verdict"] in ("normal", "anomalous", "uncertain") for r in records)
    assert [r["path"] for r in records] == ["first.png", "second.png"]
    assert summary["total"] == 2 and summary["inspected"] == 2
    assert _lock_is_free(out)


def test_watch_killed_mid_run_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    folder, out, reference = tmp_path / "live", tmp_path / "results.jsonl", tmp_path / "reference.png"
    folder.mkdir()
    part_image(False, seed=99).save(reference)
    for index in range(10):
        part_image(index % 3 == 0, seed=index).save(folder / f"part_{index:02d}.png")
    process = _start(folder, out, reference, 0.4)
    _wait_for_lines(out, 3, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    before = _lines(out)
    assert 3 <= len(before) < 10, "the watcher must be killed midway"
    part_image(True, seed=50).save(folder / "arrived_while_down.png")

    process = _start(folder, out, reference, 0.0)
    _wait_for_lines(out, 11, process)
    summary = _stop(process, signal.SIGINT)
    records = _lines(out)
    names = [Path(str(r["image"])).name for r in records]
    assert sorted(names) == sorted(p.name for p in folder.iterdir())  # nothing lost
    assert len(names) == len(set(names)) == 11  # nothing duplicated
    assert records[: len(before)] == before  # what was written stays as it was
    assert summary["total"] == 11 and summary["inspected"] == 11 - len(before)
    assert _lock_is_free(out)
