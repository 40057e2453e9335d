"""``riad triage --ray``: Ray Data on a local (loopback) cluster gives a local run's records, and resumes."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.fakes import part_image
from support.ray_fakes import fake_components

from riad_agent.graphs.triage import TriageJob, build_triage_graph, run_triage

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}},
    )
    yield
    ray.shutdown()


def _lines(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def _comparable(record: dict[str, object]) -> dict[str, object]:
    """A record without what differs between two runs by nature: the time it took."""
    return {key: value for key, value in record.items() if key != "elapsed_ms"}


async def test_ray_records_equal_a_local_run_and_resume(tmp_path: Path, cluster: None) -> None:
    from riad_agent.graphs.triage_ray import run_ray_triage

    images = tmp_path / "images"
    for index in range(8):
        folder = images / ("a" if index % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        part_image(index % 3 == 0, seed=index).save(folder / f"{index // 2:03d}.png")
    (images / "broken.png").write_bytes(b"not a png")
    reference = tmp_path / "reference.png"
    part_image(False, seed=99).save(reference)
    factory = functools.partial(fake_components, str(tmp_path / "data"))

    local_out = tmp_path / "local.jsonl"
    job = TriageJob(images=images, out=local_out, references=[reference], reasoner="never", heatmaps=False)
    await run_triage(job, build_triage_graph(components=factory()))
    local = sorted((_comparable(r) for r in _lines(local_out)), key=lambda r: str(r["image"]))

    ray_out = tmp_path / "ray.jsonl"
    ray_out.write_text(
        "".join(line + "\n" for line in local_out.read_text().splitlines()[:3])
    )  # a run cut short
    summary = run_ray_triage(
        job.model_copy(update={"out": ray_out, "concurrency": 2}), "local", factory=factory
    )
    remote = sorted((_comparable(r) for r in _lines(ray_out)), key=lambda r: str(r["image"]))
    assert remote == local  # the same records, each image once
    assert summary.skipped == 3 and summary.inspected == 6 and summary.errors == 1
    again = run_ray_triage(job.model_copy(update={"out": ray_out}), "local", factory=factory)
    assert again.inspected == 0 and len(_lines(ray_out)) == 9


def test_a_killed_ray_run_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    psutil = pytest.importorskip("psutil")
    images = tmp_path / "images"
    images.mkdir()
    for index in range(12):
        part_image(index % 3 == 0, seed=index).save(images / f"part_{index:02d}.png")
    reference = tmp_path / "reference.png"
    part_image(False, seed=99).save(reference)
    out = tmp_path / "results.jsonl"
    command = [
        sys.executable,
        str(TESTS / "support" / "fake_ray_triage.py"),
        str(images),
        str(out),
        str(reference),
    ]
    process = subprocess.Popen([*command, "1.0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cluster: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while not out.exists() or len(_lines(out)) < 2:
            assert process.poll() is None, process.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "no records from the Ray run"
            time.sleep(0.1)
        cluster = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        for child in cluster:  # the local cluster this driver started
            with contextlib.suppress(psutil.Error):
                child.kill()
    before = _lines(out)
    assert 2 <= len(before) < 12, "the run must be killed midway"

    finished = subprocess.run([*command, "0"], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    summary = json.loads(finished.stdout.strip().splitlines()[-1])
    records = _lines(out)
    names = [Path(str(r["image"])).name for r in records]
    assert sorted(names) == sorted(p.name for p in images.iterdir())  # nothing lost
    assert len(names) == len(set(names)) == 12  # nothing duplicated
    assert records[: len(before)] == before
    assert summary["skipped"] == len(before) and summary["inspected"] == 12 - len(before)
