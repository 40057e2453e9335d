"""Batch triage: bounded concurrency, JSONL as results finish, resume after a kill, errors recorded."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner, part_image

from riad_agent.components import Components, build_components
from riad_agent.errors import InvalidRequestError, ResultsFileError, UnknownCategoryError
from riad_agent.graphs.triage import TriageJob, build_triage_graph, read_finished, run_triage
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


def _fake_components(tmp_path: Path) -> Components:
    return build_components(
        Settings(data_dir=tmp_path / "data"),
        knowledge=FakeKnowledge(),
        expert=FakeExpert(),
        reasoner=FakeReasoner(),
    )


def _records(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


async def test_triage_writes_one_line_per_image_and_records_errors(tmp_path: Path) -> None:
    images, reference = _folder(tmp_path, 6)
    (images / "broken.png").write_bytes(b"not a png")
    components = _fake_components(tmp_path)
    events: list[dict[str, object]] = []
    graph = build_triage_graph(components=components, progress=events.append)
    out = tmp_path / "results.jsonl"
    summary = await run_triage(
        TriageJob(images=images, out=out, references=[reference], concurrency=3), graph
    )
    records = _records(out)
    assert len(records) == 7 and len({r["image"] for r in records}) == 7
    assert summary.total == 7 and summary.inspected == 7 and summary.errors == 1
    assert summary.anomalous == 2 and summary.normal == 4
    broken = next(r for r in records if str(r["image"]).endswith("broken.png"))
    assert broken["error"]["type"] == "InvalidImageError"
    heatmaps = [r["heatmap"] for r in records if r.get("heatmap")]
    assert len(heatmaps) == 6 and all(Path(str(h)).is_file() for h in heatmaps)
    assert events[-1]["done"] == 7

    again = await run_triage(TriageJob(images=images, out=out, references=[reference]), graph)
    assert again.skipped == 7 and again.inspected == 0 and len(_records(out)) == 7
    retried = await run_triage(
        TriageJob(images=images, out=out, references=[reference], retry_errors=True), graph
    )
    assert retried.inspected == 1


async def test_a_results_file_of_another_folder_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    """Two folders in one file would mix on the page and in the cautions (``part_00.png`` of which?):
    the second is refused, the file untouched; the first folder resumes; a symbolic link into another
    folder (recorded by its target) does not count as another folder."""
    images, reference = _folder(tmp_path, 3)
    other = tmp_path / "other"
    other.mkdir()
    part_image(True, seed=5).save(other / "part_00.png")
    (images / "linked.png").symlink_to(other / "part_00.png")
    graph = build_triage_graph(components=_fake_components(tmp_path))
    out = tmp_path / "results.jsonl"
    first = await run_triage(TriageJob(images=images, out=out, references=[reference]), graph)
    assert first.inspected == 4
    before = out.read_bytes()
    with pytest.raises(
        ResultsFileError, match=r"holds results of other images .*part_0\d\.png, outside .*other"
    ):
        await run_triage(TriageJob(images=other, out=out, references=[reference]), graph)
    assert out.read_bytes() == before
    again = await run_triage(TriageJob(images=images, out=out, references=[reference]), graph)
    assert again.skipped == 4 and again.inspected == 0


async def test_a_mistyped_category_ends_the_run_with_its_typed_error(tmp_path: Path) -> None:
    images, reference = _folder(tmp_path, 3)
    graph = build_triage_graph(components=_fake_components(tmp_path))
    out = tmp_path / "results.jsonl"
    # wrong for every image: not one error line per image and an exit status of success
    with pytest.raises(UnknownCategoryError, match="synthetic/washer"):
        await run_triage(TriageJob(images=images, out=out, category="synthetic/washr"), graph)
    assert not out.exists() or _records(out) == []
    # the lock was let go: the corrected run goes ahead
    summary = await run_triage(
        TriageJob(images=images, out=out, category="synthetic/washer", references=[reference]), graph
    )
    assert summary.inspected == 3 and summary.errors == 0


@pytest.mark.parametrize(
    "tail", ['{"image": "/b.pn', "{", "\x00" * 512, '{"image": "/b.png", "elapsed_ms": 1}']
)
def test_torn_last_line_is_cut(tmp_path: Path, tail: str) -> None:
    out = tmp_path / "r.jsonl"
    first = '{"image": "/a.png", "error": {"type": "InvalidImageError", "message": "no"}, "elapsed_ms": 1}\n'
    out.write_text(first + tail)
    assert read_finished(out, retry_errors=False) == {"/a.png"}
    assert read_finished(out, retry_errors=True) == set()
    assert out.read_text() == first


def test_missing_folder_is_typed(tmp_path: Path) -> None:
    from riad_agent.graphs.triage import list_images

    with pytest.raises(InvalidRequestError):
        list_images(tmp_path / "nope")
    with pytest.raises(InvalidRequestError, match="holds no images"):
        list_images(tmp_path)


def test_killed_triage_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    images, reference = _folder(tmp_path, 12)
    out = tmp_path / "results.jsonl"
    command = [sys.executable, str(SUPPORT / "fake_triage.py"), str(images), str(out), str(reference), "0.4"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if out.exists() and len(out.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    before = _records(out)
    assert 3 <= len(before) < 12, "the run must be killed midway"

    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    summary = json.loads(finished.stdout.strip().splitlines()[-1])
    records = _records(out)
    names = [Path(str(r["image"])).name for r in records]
    assert sorted(names) == sorted(p.name for p in images.iterdir())  # nothing lost
    assert len(names) == len(set(names)) == 12  # nothing duplicated
    assert records[: len(before)] == before  # what was written stays as it was
    assert summary["skipped"] == len(before) and summary["inspected"] == 12 - len(before)


async def test_disk_full_is_a_typed_error_and_close_is_quiet() -> None:
    from riad_agent.errors import OutputWriteError
    from riad_agent.graphs.triage import JsonlWriter, TriageRecord

    writer = JsonlWriter(Path("/dev/full"))  # every write fails with ENOSPC
    with pytest.raises(OutputWriteError, match="lines already written are kept"):
        await writer.write(TriageRecord(image="/a.png", elapsed_ms=1.0))
    writer.close()  # flushing the leftover buffer fails again, silently
