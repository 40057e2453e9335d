"""The triage results file: only a torn last line is ever cut, anything else unexpected is a typed error
and the file stays byte for byte as it was; one run at a time holds it (an OS lock, gone with its process)."""

from __future__ import annotations

import fcntl
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner, part_image

from riad_agent.components import build_components
from riad_agent.errors import ResultsFileError, ResultsLockedError
from riad_agent.graphs.triage import TriageJob, build_triage_graph, run_triage
from riad_agent.settings import Settings

SUPPORT = Path(__file__).resolve().parents[1] / "support"


def _folder(root: Path, count: int) -> tuple[Path, Path]:
    images = root / "images"
    images.mkdir()
    for index in range(count):
        part_image(index % 3 == 0, seed=index).save(images / f"part_{index:02d}.png")
    reference = root / "reference.png"
    part_image(False, seed=99).save(reference)
    return images, reference


def _graph(root: Path):  # type: ignore[no-untyped-def]
    components = build_components(
        Settings(data_dir=root / "data"),
        knowledge=FakeKnowledge(),
        expert=FakeExpert(),
        reasoner=FakeReasoner(),
    )
    return build_triage_graph(components=components)


def _line(image: Path | str, verdict: str = "normal") -> str:
    """A line as an earlier run would have written it (only what the reader looks at)."""
    return (
        json.dumps(
            {"image": str(image), "report": {"verdict": verdict, "anomaly_score": 0.2}, "elapsed_ms": 1.0}
        )
        + "\n"
    )


@contextmanager
def _held(out: Path) -> Iterator[None]:
    """Another holder of the results lock: an exclusive flock on ``<out>.lock``."""
    with open(f"{out}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{first}garbage\n{second}", "not JSON"),  # a corrupt line in the middle
        ("{first}[1, 2]\n{second}", "image"),  # JSON, but not an object
        ('{first}{{"verdict": "normal"}}\n{second}', "image"),  # valid JSON without "image"
        ('{first}{{"image": 7}}\n{second}', "image"),  # "image" not a path
        ("{first}\x00\x00\x00\n{second}", "not JSON"),
    ],
)
async def test_unexpected_line_is_typed_and_the_file_untouched(
    tmp_path: Path, content: str, problem: str
) -> None:
    images, reference = _folder(tmp_path, 3)
    first, *_, last = sorted(images.iterdir())
    out = tmp_path / "results.jsonl"
    out.write_text(content.format(first=_line(first), second=_line(last)))
    before = out.read_bytes()
    with pytest.raises(ResultsFileError, match=f"line 2.*{problem}") as caught:
        await run_triage(TriageJob(images=images, out=out, references=[reference]), _graph(tmp_path))
    assert str(out) in caught.value.message and "untouched" in caught.value.message
    assert out.read_bytes() == before


@pytest.mark.parametrize(
    "content", ["meeting notes\nsecond line\n", "meeting notes, one line, no newline", "x"]
)
async def test_an_existing_file_of_other_content_is_typed_and_untouched(tmp_path: Path, content: str) -> None:
    images, reference = _folder(tmp_path, 2)
    out = tmp_path / "notes.txt"
    out.write_text(content)
    with pytest.raises(ResultsFileError, match="line 1"):
        await run_triage(TriageJob(images=images, out=out, references=[reference]), _graph(tmp_path))
    assert out.read_text() == content


async def test_torn_last_line_is_cut_and_its_image_redone(tmp_path: Path) -> None:
    images, reference = _folder(tmp_path, 5)
    out = tmp_path / "results.jsonl"
    graph = _graph(tmp_path)
    await run_triage(TriageJob(images=images, out=out, references=[reference], heatmaps=False), graph)
    whole = out.read_bytes()
    lines = whole.splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:-1]) + lines[-1][:17])  # a crash in the middle of the last write
    summary = await run_triage(
        TriageJob(images=images, out=out, references=[reference], heatmaps=False), graph
    )
    assert summary.skipped == 4 and summary.inspected == 1
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[:4] == [json.loads(line) for line in lines[:4]]
    assert sorted(r["image"] for r in records) == sorted(json.loads(line)["image"] for line in lines)


async def test_summary_counts_each_image_once(tmp_path: Path) -> None:
    images, reference = _folder(tmp_path, 3)
    (images / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "results.jsonl"
    graph = _graph(tmp_path)
    job = TriageJob(images=images, out=out, references=[reference], retry_errors=True)
    await run_triage(job, graph)
    again = await run_triage(job, graph)  # the broken image is redone and fails again: a second line for it
    assert again.inspected == 1 and len(out.read_text().splitlines()) == 5
    assert (
        again.errors == 1
        and again.anomalous + again.normal + again.uncertain + again.errors == again.total == 4
    )


async def test_a_second_lock_holder_makes_the_run_fail_typed(tmp_path: Path) -> None:
    images, reference = _folder(tmp_path, 2)
    out = tmp_path / "results.jsonl"
    out.write_text(_line(images / "part_00.png"))
    before = out.read_bytes()
    with _held(out), pytest.raises(ResultsLockedError, match="another triage run"):
        await run_triage(TriageJob(images=images, out=out, references=[reference]), _graph(tmp_path))
    assert out.read_bytes() == before
    summary = await run_triage(TriageJob(images=images, out=out, references=[reference]), _graph(tmp_path))
    assert summary.inspected == 1 and summary.skipped == 1  # released: the next run goes ahead


async def test_a_running_process_holds_the_file_until_killed(tmp_path: Path) -> None:
    images, reference = _folder(tmp_path, 12)
    out = tmp_path / "results.jsonl"
    graph = _graph(tmp_path)  # built first: the first run must still be going when this one starts
    command = [sys.executable, str(SUPPORT / "fake_triage.py"), str(images), str(out), str(reference), "1.0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out.exists() and len(out.read_text().splitlines()) >= 2):
            time.sleep(0.05)
        assert process.poll() is None, "the first run must still be going"
        with pytest.raises(ResultsLockedError, match=f"pid {process.pid}"):
            await run_triage(TriageJob(images=images, out=out, references=[reference]), graph)
    finally:
        process.send_signal(signal.SIGKILL)  # the OS drops its lock with it
        process.wait(timeout=10)
    written = len(out.read_text().splitlines())
    summary = await run_triage(TriageJob(images=images, out=out, references=[reference]), graph)
    names = [Path(json.loads(line)["image"]).name for line in out.read_text().splitlines()]
    assert len(names) == len(set(names)) == 12
    assert (
        summary.total == 12 and summary.skipped >= written - 1 and summary.inspected == 12 - summary.skipped
    )


def test_the_page_reader_never_writes_and_shows_each_image_once(tmp_path: Path) -> None:
    from riad_agent.graphs.triage_results import read_records

    out = tmp_path / "results.jsonl"
    content = _line("/a.png", "anomalous") + "\n" + _line("/b.png") + _line("/a.png") + '{"image": "/c.p'
    out.write_text(content)
    records = read_records(out)  # a run may be appending: its unfinished line is left alone
    assert [(r["image"], r["report"]["verdict"]) for r in records] == [
        ("/a.png", "normal"),
        ("/b.png", "normal"),
    ]
    assert out.read_text() == content


def test_a_folder_as_out_is_typed(tmp_path: Path) -> None:
    from riad_agent.graphs.triage_results import read_outcomes

    with pytest.raises(ResultsFileError, match="not a regular file"):
        read_outcomes(tmp_path)
