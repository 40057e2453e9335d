"""The embedded store on one data dir shared by processes and by knowledge bases in one process.

Every reader gets knowledge while others read or write; a write waits for another one with a
timeout and a typed error; a writer killed mid-write leaves the last good generation readable.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from riad_agent.errors import KnowledgeStoreLockedError
from riad_agent.knowledge.embed import HashingEmbedder
from riad_agent.knowledge.factory import open_knowledge_base
from riad_agent.knowledge.loaders import load_riad
from riad_agent.knowledge.store import QdrantKnowledgeBase
from riad_agent.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures" / "base"

# a second process: open the store, search it, print one JSON line
_READER = """
import json, sys
from riad_agent.errors import RiadError
from riad_agent.knowledge.embed import HashingEmbedder
from riad_agent.knowledge.factory import open_knowledge_base
from riad_agent.settings import Settings
settings = Settings(data_dir=sys.argv[1], embedder="hashing", qdrant_url=None)
try:
    kb = open_knowledge_base(settings, embedder=HashingEmbedder(), ingest_packaged=False)
    hits = kb.search(sys.argv[2], k=1)
    print(json.dumps({"categories": kb.categories(), "top": hits[0].id if hits else None}))
except RiadError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": exc.one_line()}))
"""

# a writer that is killed while it upserts: it says so on stdout, then sleeps inside the upsert
_KILLED_WRITER = """
import sys, time
from qdrant_client import QdrantClient
from riad_agent.knowledge.embed import HashingEmbedder
from riad_agent.knowledge.factory import open_knowledge_base
from riad_agent.knowledge.loaders import load_riad
from riad_agent.settings import Settings
original = QdrantClient.upsert
def slow_upsert(self, *args, **kwargs):
    result = original(self, *args, **kwargs)
    print("UPSERTING", flush=True)
    time.sleep(600)
    return result
QdrantClient.upsert = slow_upsert
settings = Settings(data_dir=sys.argv[1], embedder="hashing", qdrant_url=None)
kb = open_knowledge_base(settings, embedder=HashingEmbedder(), ingest_packaged=False)
kb.ingest(load_riad(sys.argv[2]), scope="more")
"""


def _settings(data: Path, **overrides: object) -> Settings:
    return Settings(data_dir=data, embedder="hashing", qdrant_url=None, **overrides)  # type: ignore[arg-type]


def _open(data: Path, **overrides: object) -> QdrantKnowledgeBase:
    return open_knowledge_base(
        _settings(data, **overrides), embedder=HashingEmbedder(), ingest_packaged=False
    )


def _read_in_another_process(data: Path, query: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _READER, str(data), query], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[QdrantKnowledgeBase]:
    store = _open(tmp_path / "data")
    store.ingest(load_riad(FIXTURES / "mvtec"), scope="mvtec")
    yield store
    store.close()


def test_another_process_reads_while_this_one_has_the_store_open(
    kb: QdrantKnowledgeBase, tmp_path: Path
) -> None:
    result = _read_in_another_process(tmp_path / "data", "crack through the nut shell")
    assert result == {"categories": ["mvtec/hazelnut", "mvtec/screw"], "top": "mvtec/hazelnut/crack"}
    assert kb.search("crack through the nut shell", k=1)[0].id == "mvtec/hazelnut/crack"  # still works here


def test_two_knowledge_bases_in_one_process(kb: QdrantKnowledgeBase, tmp_path: Path) -> None:
    second = _open(tmp_path / "data")
    try:
        assert second.search("crack through the nut shell", k=1)[0].id == "mvtec/hazelnut/crack"
        second.ingest(load_riad(FIXTURES / "visa"), scope="visa")
        # the first one sees the second one's write at its next search
        assert kb.search("candle without its black wick", k=1)[0].id == "visa/candle/missing_wick"
        assert "visa/candle" in kb.categories()
    finally:
        second.close()


def test_a_write_in_another_process_is_seen_here(kb: QdrantKnowledgeBase, tmp_path: Path) -> None:
    assert kb.categories() == ["mvtec/hazelnut", "mvtec/screw"]
    other = tmp_path / "other"
    shutil.copytree(FIXTURES / "visa", other)
    done = subprocess.run(
        [sys.executable, "-m", "riad_agent.cli", "kb", "ingest", str(other), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "RIAD_DATA_DIR": str(tmp_path / "data"), "RIAD_EMBEDDER": "hashing"},
    )
    assert done.returncode == 0, done.stderr
    assert kb.categories() == ["mvtec/hazelnut", "mvtec/screw", "visa/candle", "visa/screw"]
    hits = kb.search("melted wax on the candle", category="visa/candle", k=2)
    assert hits and {h.category for h in hits} == {"visa/candle"}


def test_a_waiting_write_times_out_with_a_typed_error_naming_the_holder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    kb = _open(data, knowledge_lock_timeout_s=0.5)
    try:
        kb.ingest(load_riad(FIXTURES / "mvtec"), scope="mvtec")
        lock = data / "qdrant" / "writer.lock"
        with open(lock, "r+") as handle:  # another writer holds the store
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": 4242, "command": "riad kb ingest big/", "since": "12:00:00"}))
            handle.flush()
            started = time.monotonic()
            with pytest.raises(
                KnowledgeStoreLockedError, match=r"pid 4242 \(riad kb ingest big/\)"
            ) as caught:
                kb.ingest(load_riad(FIXTURES / "visa"), scope="visa")
            assert time.monotonic() - started >= 0.5
            assert str(data / "qdrant") in str(caught.value)
            # reads never wait for the writer
            assert kb.search("crack through the nut shell", k=1)[0].id == "mvtec/hazelnut/crack"
            assert (
                _read_in_another_process(data, "crack through the nut shell")["top"] == "mvtec/hazelnut/crack"
            )
        kb.ingest(load_riad(FIXTURES / "visa"), scope="visa")  # free again
        assert "visa/candle" in kb.categories()
    finally:
        kb.close()


def test_a_writer_killed_during_an_upsert_leaves_the_last_good_store(
    kb: QdrantKnowledgeBase, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(data), str(FIXTURES / "visa")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "UPSERTING", writer.stderr.read() if writer.stderr else ""
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
    # the half-written ingest is not visible; the store reads and takes writes again at once
    assert _read_in_another_process(data, "crack through the nut shell") == {
        "categories": ["mvtec/hazelnut", "mvtec/screw"],
        "top": "mvtec/hazelnut/crack",
    }
    assert kb.categories() == ["mvtec/hazelnut", "mvtec/screw"]
    kb.ingest(load_riad(FIXTURES / "visa"), scope="visa")
    assert (
        _read_in_another_process(data, "candle without its black wick")["top"] == "visa/candle/missing_wick"
    )


def test_a_store_written_by_an_older_version_is_taken_over(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient

    from riad_agent.knowledge.backend import FixedClient

    folder = tmp_path / "data" / "qdrant"
    folder.mkdir(parents=True)
    legacy = QdrantKnowledgeBase(FixedClient(QdrantClient(path=str(folder))), HashingEmbedder())
    legacy.ingest(load_riad(FIXTURES / "mvtec"), scope="mvtec")
    legacy.close()
    kb = _open(tmp_path / "data")
    try:
        assert kb.categories() == ["mvtec/hazelnut", "mvtec/screw"]
        assert kb.search("crack through the nut shell", k=1)[0].id == "mvtec/hazelnut/crack"
        meta = kb.meta()
        assert meta is not None and meta.embedder == "hashing-384"
        assert _read_in_another_process(tmp_path / "data", "crack through the nut shell")["top"] == (
            "mvtec/hazelnut/crack"
        )
    finally:
        kb.close()


def test_connect_gives_a_store_anyone_on_the_path_can_open(tmp_path: Path) -> None:
    from riad_agent.knowledge.backend import connect

    settings = _settings(tmp_path)
    first, second = connect(settings), connect(settings)
    try:
        assert first.current()[0].get_collections().collections == []
        assert second.current()[0].get_collections().collections == []
    finally:
        first.close()
        second.close()


def test_two_inspectors_in_one_process_both_get_knowledge(tmp_path: Path) -> None:
    from PIL import Image
    from support.fakes import FakeExpert, FakeReasoner

    from riad_agent.components import build_components
    from riad_agent.inspector import Inspector
    from riad_agent.schemas import InspectionOptions, InspectionRequest

    settings = _settings(tmp_path / "data")
    image = tmp_path / "part.png"
    Image.new("RGB", (96, 96), (120, 120, 120)).save(image)
    request = InspectionRequest(
        image=str(image),
        category="washer",
        references=[str(image)],
        options=InspectionOptions(use_reasoner=False),
    )
    inspectors = [
        Inspector(components=build_components(settings, expert=FakeExpert(), reasoner=FakeReasoner()))
        for _ in range(2)
    ]
    reports = [inspector.inspect(request) for inspector in inspectors]
    for report in reports:
        assert "knowledge_unavailable" not in report.degraded
        assert report.knowledge and all(hit.category == "synthetic/washer" for hit in report.knowledge)


def test_searches_in_threads_go_on_while_another_thread_writes(
    kb: QdrantKnowledgeBase, tmp_path: Path
) -> None:
    import threading

    stop = threading.Event()
    failures: list[str] = []
    counts = [0] * 3

    def search(slot: int) -> None:
        while not stop.is_set():
            try:
                hits = kb.search("crack through the nut shell", category="hazelnut", k=2)
                if not hits or hits[0].id != "mvtec/hazelnut/crack":
                    failures.append(f"hits: {[h.id for h in hits]}")
                counts[slot] += 1
            except Exception as exc:  # collected and asserted below
                failures.append(repr(exc))

    threads = [threading.Thread(target=search, args=(slot,)) for slot in range(3)]
    for thread in threads:
        thread.start()
    try:
        writer = _open(tmp_path / "data")
        for rebuild in (False, True, True):  # a new generation each time
            writer.ingest(load_riad(FIXTURES / "visa"), scope="visa", rebuild=rebuild)
        writer.close()
        time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures[:3]
    assert all(counts)
    assert "visa/candle" in kb.categories()


def test_a_full_disk_while_publishing_is_a_typed_error_and_keeps_the_last_version(
    kb: QdrantKnowledgeBase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from riad_agent.errors import BackendUnavailableError
    from riad_agent.knowledge import snapshot

    def full(path: Path, arrays: object) -> None:
        path.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(snapshot, "write", full)
    with pytest.raises(BackendUnavailableError, match="No space left on device.*keeps its last version"):
        kb.ingest(load_riad(FIXTURES / "visa"), scope="visa")
    monkeypatch.undo()
    assert not list((tmp_path / "data" / "qdrant").glob(".*.tmp"))
    assert _read_in_another_process(tmp_path / "data", "crack through the nut shell") == {
        "categories": ["mvtec/hazelnut", "mvtec/screw"],
        "top": "mvtec/hazelnut/crack",
    }


def test_cli_ingest_says_whom_it_waits_for_and_fails_typed(kb: QdrantKnowledgeBase, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open(data / "qdrant" / "writer.lock", "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": 4242, "command": "riad kb ingest big/", "since": "12:00:00"}))
        handle.flush()
        done = subprocess.run(
            [sys.executable, "-m", "riad_agent.cli", "kb", "ingest", str(FIXTURES / "visa")],
            capture_output=True,
            text=True,
            timeout=300,
            env={
                **os.environ,
                "RIAD_DATA_DIR": str(data),
                "RIAD_EMBEDDER": "hashing",
                "RIAD_KNOWLEDGE_LOCK_TIMEOUT_S": "0.5",
            },
        )
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith(f"waiting for the knowledge store {data / 'qdrant'}, written by pid 4242")
    assert lines[-1].startswith("KnowledgeStoreLockedError: the knowledge store")
    assert "Traceback" not in done.stderr
