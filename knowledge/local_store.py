"""The embedded knowledge store shared by every process on one data dir.

Qdrant's local mode locks its folder for as long as a client is open, so a second process (or a
second client in one process) could not read it. Here the folder holds immutable *generations*
instead, each one file written by :mod:`~riad_agent.knowledge.snapshot`:

- ``CURRENT`` names the live generation (JSON: file name and content digest), replaced atomically;
- a reader loads the live generation into its own in-memory client and keeps it until ``CURRENT``
  changes (one ``stat`` per access); it never takes a lock, so searches never wait for a writer.
  Every store object on one path in a process shares that copy;
- a writer takes ``writer.lock`` (``flock``, waiting up to ``lock_timeout_s``), loads the live
  generation into a private client, writes, then writes the next generation to a temporary file,
  flushes it, renames it into place and points ``CURRENT`` at it. A writer that fails or is killed
  leaves ``CURRENT`` on the last good generation; the OS drops its lock with the process.

A folder written by an older riad-agent (Qdrant's own ``meta.json`` layout) is read once, under
the writer lock, into the first generation.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from qdrant_client import QdrantClient

from riad_agent.errors import BackendUnavailableError, KnowledgeFormatError, KnowledgeStoreLockedError
from riad_agent.knowledge import snapshot

log = logging.getLogger(__name__)

CURRENT = "CURRENT"
LOCK = "writer.lock"
LEGACY_META = "meta.json"
KEEP_GENERATIONS = 3
_GENERATION = re.compile(r"^gen-(\d{12})\.npz$")
_StatKey = tuple[int, int, int]


@dataclass
class _Shared:
    """The read copy of one store path, shared by every :class:`LocalStore` on it in this process."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    # (stat key of CURRENT, generation file, client holding it), replaced as a whole
    state: tuple[_StatKey | None, str, QdrantClient] | None = None
    users: int = 0  # open LocalStore objects; the copy is dropped when the last one closes


_SHARED: dict[Path, _Shared] = {}
_SHARED_LOCK = threading.Lock()


def _attach(path: Path) -> _Shared:
    with _SHARED_LOCK:
        shared = _SHARED.setdefault(path, _Shared())
        shared.users += 1
        return shared


def _detach(path: Path) -> None:
    with _SHARED_LOCK:
        shared = _SHARED.get(path)
        if shared is not None:
            shared.users -= 1
            if shared.users <= 0:
                del _SHARED[path]


def _stat_key(path: Path) -> _StatKey | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    """The embedded store at ``path``: shared read copies, one writer at a time (see the module doc)."""

    local = True

    def __init__(self, path: Path, lock_timeout_s: float = 120.0) -> None:
        self.path = path.resolve()
        self.lock_timeout_s = lock_timeout_s
        self._shared = _attach(self.path)
        self._current = self.path / CURRENT
        self._closed = False

    # ------------------------------------------------------------ reading

    def current(self) -> tuple[QdrantClient, str]:
        """The live generation's read copy (loaded again when ``CURRENT`` changed) and its file name."""
        shared = self._shared
        key, state = _stat_key(self._current), shared.state
        if state is not None and key == state[0]:
            return state[2], state[1]
        with shared.lock:
            for _ in range(5):
                key, state = _stat_key(self._current), shared.state
                if state is not None and key == state[0]:
                    return state[2], state[1]
                if key is None and (self.path / LEGACY_META).is_file():
                    with self.transaction():  # take over the older layout once; readers then load it
                        pass
                    continue
                try:
                    state = self._load_live()
                except FileNotFoundError:
                    continue  # a writer replaced the generation meanwhile: read CURRENT again
                shared.state = state
                return state[2], state[1]
        raise BackendUnavailableError(
            f"the knowledge store {self.path} changed too often to be read; try again"
        )

    def _read_current(self) -> tuple[_StatKey | None, dict[str, str] | None]:
        try:
            with open(self.path / CURRENT, encoding="utf-8") as handle:
                stat = os.fstat(handle.fileno())
                text = handle.read()
        except FileNotFoundError:
            return None, None
        try:
            record = json.loads(text)
            if not (isinstance(record, dict) and _GENERATION.match(str(record.get("file", "")))):
                raise ValueError("no generation file named")
        except ValueError as exc:
            raise KnowledgeFormatError(
                f"{self.path / CURRENT} is damaged ({exc}); delete the folder {self.path} and ingest again"
            ) from exc
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size), record

    def _load_live(self) -> tuple[_StatKey | None, str, QdrantClient]:
        """``(stat key of CURRENT, generation file, a fresh client holding it)``; empty without a store."""
        key, record = self._read_current()
        if record is None:
            return None, "", QdrantClient(location=":memory:")
        started = time.perf_counter()
        client = snapshot.restore(snapshot.read(self.path / record["file"]))
        log.debug("loaded %s in %.1f ms", record["file"], (time.perf_counter() - started) * 1000)
        return key, record["file"], client

    # ------------------------------------------------------------ writing

    @contextlib.contextmanager
    def transaction(self) -> Iterator[QdrantClient]:
        """A private client holding the live generation; published as the next one if the block succeeds."""
        with self._writer_lock():
            self._remove_temporaries()
            _, record = self._read_current()
            if record is not None:
                client = snapshot.restore(snapshot.read(self.path / record["file"]))
                before = record.get("digest")
            else:
                client = self._take_over_legacy() or QdrantClient(location=":memory:")
                before = None
            yield client
            self._publish(client, record, before)

    def _publish(self, client: QdrantClient, record: dict[str, str] | None, before: str | None) -> None:
        arrays = snapshot.dump(client)
        content = snapshot.digest(arrays)
        if content == before:
            return  # nothing changed: readers keep their copy
        number = _number(record["file"]) + 1 if record else 1
        name = f"gen-{number:012d}.npz"
        temporary = self.path / f".{name}.{os.getpid()}.tmp"
        pointer = self.path / f".{CURRENT}.{os.getpid()}.tmp"
        try:
            snapshot.write(temporary, arrays)
            temporary.replace(self.path / name)
            with open(pointer, "w", encoding="utf-8") as handle:
                json.dump({"file": name, "digest": content}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            pointer.replace(self.path / CURRENT)
            _fsync_dir(self.path)
        except OSError as exc:
            for leftover in (temporary, pointer):
                with contextlib.suppress(OSError):
                    leftover.unlink()
            raise BackendUnavailableError(
                f"cannot write the knowledge store {self.path}: {exc.strerror or exc}; it keeps its last "
                "version (free disk space or fix the permissions, then ingest again)"
            ) from exc
        shared = self._shared
        with shared.lock:  # this process reads what it wrote without loading it again
            shared.state = (_stat_key(self._current), name, client)
        self._remove_old_generations(number)

    def _take_over_legacy(self) -> QdrantClient | None:
        """An in-memory copy of a store in Qdrant's own layout (written by an older riad-agent)."""
        if not (self.path / LEGACY_META).is_file():
            return None
        try:
            legacy = QdrantClient(path=str(self.path))
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise BackendUnavailableError(
                    f"the knowledge store {self.path} is open in a process of an older riad-agent; close it"
                ) from exc
            raise
        try:
            log.info("taking over the knowledge store %s written by an older riad-agent", self.path)
            return snapshot.copy(legacy)
        finally:
            legacy.close()

    def _remove_temporaries(self) -> None:
        """Files of writers that died before renaming them (only the lock holder writes any)."""
        for leftover in self.path.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def _remove_old_generations(self, newest: int) -> None:
        for path in self.path.glob("gen-*.npz"):
            if _GENERATION.match(path.name) and _number(path.name) <= newest - KEEP_GENERATIONS:
                with contextlib.suppress(OSError):
                    path.unlink()

    @contextlib.contextmanager
    def _writer_lock(self) -> Iterator[None]:
        """Hold ``writer.lock``; wait up to ``lock_timeout_s`` for another writer, then raise naming it."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            handle = open(self.path / LOCK, "a+", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise BackendUnavailableError(f"cannot open the knowledge store {self.path}: {exc}") from exc
        try:
            self._acquire(handle)
            handle.seek(0)
            handle.truncate()
            holder = {"pid": os.getpid(), "command": " ".join(sys.argv)[:200], "since": _now()}
            handle.write(json.dumps(holder))
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        finally:
            handle.close()

    def _acquire(self, handle: IO[str]) -> None:
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.01
        told = False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if time.monotonic() >= deadline:
                raise KnowledgeStoreLockedError(
                    f"the knowledge store {self.path} is being written by {_holder(handle)}; waited "
                    f"{self.lock_timeout_s:g} s. Try again when it is done, or raise RIAD_KNOWLEDGE_LOCK_TIMEOUT_S"
                )
            if not told:
                log.info("waiting for the knowledge store %s, written by %s", self.path, _holder(handle))
                told = True
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.2)

    def close(self) -> None:
        """Let go of the shared read copy (no lock is held outside a write); reads after this load it again."""
        if not self._closed:
            self._closed = True
            _detach(self.path)


def _number(name: str) -> int:
    found = _GENERATION.match(name)
    return int(found.group(1)) if found else 0


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _holder(handle: IO[str]) -> str:
    """'pid 123 (riad kb ingest ...) since ...' from the lock file, as far as it says."""
    try:
        handle.seek(0)
        record = json.loads(handle.read() or "{}")
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict) or "pid" not in record:
        return "another process"
    return f"pid {record['pid']} ({record.get('command') or '?'}) since {record.get('since') or '?'}"
