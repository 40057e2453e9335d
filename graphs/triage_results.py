"""The triage results file: one JSON line per inspected image; its reader, its appender and its lock.

Only a torn last line (a crash in the middle of a write: bytes after the last newline that begin a
JSON object, or zero bytes) is ever cut. Any other content that is not a triage record (a notes file
given as ``--out``, a corrupt line in the middle, a line without ``"image"``) is a
:class:`ResultsFileError` naming the line, and the file is left byte for byte as it was.

One run at a time writes to a file: :class:`ResultsLock` holds an exclusive ``flock`` on
``<out>.lock`` for the whole run, so the OS drops it when the process dies (even on ``kill -9``).
The lock file stays behind (removing it would let two runs lock two different files); it holds the
holder's pid, for the message only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from riad_agent.errors import OutputWriteError, ResultsFileError, ResultsLockedError, first_problem
from riad_agent.schemas import InspectionReport, Verdict

Outcome = Literal["anomalous", "normal", "uncertain", "error"]


class RecordRegion(BaseModel):
    """One region of a record: its box in original-image pixels ``[x0, y0, x1, y1)`` and its score."""

    model_config = ConfigDict(extra="forbid")

    box: tuple[int, int, int, int]
    score: float


class TriageRecord(BaseModel):
    """One JSONL line, as the writer writes it (the contract the HTML page and the exports read).

    ``verdict``, ``score`` and the other top-level fields summarise the image; ``report`` holds the
    whole :class:`InspectionReport` only when the inspection graph ran (the reasoner was asked for).
    Lines of older versions carry only ``image``/``report``/``heatmap``/``error``/``elapsed_ms``.
    """

    model_config = ConfigDict(extra="forbid")

    image: str
    path: str | None = None  # relative to the triaged root, POSIX
    product: str | None = None
    product_guessed: bool = False
    verdict: Verdict | None = None
    reason: str | None = None  # why uncertain, in plain words
    score: float | None = None
    threshold: float = 0.5
    regions: list[RecordRegion] = Field(default_factory=list)  # strongest first
    defect_type: str | None = None
    type_confidence: float | None = (
        None  # the closest labelled exemplar's similarity (0-1), not a probability
    )
    size: tuple[int, int] | None = None
    references: int | None = None  # how many normal references the image was compared with
    pose: str | None = None  # the pose the expert assumed and what said so, e.g. "fixed (references)"
    reasoner: bool = False
    report: InspectionReport | None = None
    heatmap: str | None = None
    error: dict[str, str] | None = None
    elapsed_ms: float

    @property
    def outcome(self) -> Outcome:
        """The verdict, or ``error``."""
        if self.error:
            return "error"
        if self.verdict is not None:
            return self.verdict
        return "error" if self.report is None else self.report.verdict


class _ReportHead(BaseModel):
    verdict: Verdict
    anomaly_score: float


class RecordHead(BaseModel):
    """What the reader checks of every line (other fields are not read)."""

    model_config = ConfigDict(extra="ignore")

    image: str
    verdict: Verdict | None = None
    report: _ReportHead | None = None
    error: dict[str, str] | None = None

    @model_validator(mode="after")
    def _report_or_error(self) -> RecordHead:
        if not self.image:
            raise ValueError("image is empty")
        if self.report is None and self.verdict is None and not self.error:
            raise ValueError("neither a verdict, a report nor an error")
        return self

    @property
    def outcome(self) -> Outcome:
        """The verdict, or ``error``."""
        if self.error:
            return "error"
        if self.verdict is not None:
            return self.verdict
        return "error" if self.report is None else self.report.verdict


def lock_path(out: Path) -> Path:
    """The lock file of a results file: ``<out>.lock`` beside it."""
    return out.with_name(out.name + ".lock")


def _is_torn(tail: bytes) -> bool:
    """Whether bytes after the last newline look like an unfinished write of ours."""
    body = tail.lstrip(b"\0")
    return not body.strip() or body.startswith(b"{")


def _refuse(path: Path, number: int, what: str) -> ResultsFileError:
    return ResultsFileError(
        f"{path} line {number} {what}; the file is left untouched. Fix or remove that line, "
        "or write the results to another file (--out)."
    )


def _parse(path: Path, number: int, line: bytes) -> RecordHead:
    try:
        return RecordHead.model_validate_json(line)  # builds only what it checks: faster than json.loads
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            problem = re.sub(r" at line \d+ column \d+$", "", first["msg"].removeprefix("Invalid JSON: "))
            raise _refuse(path, number, f"is not JSON ({problem})") from None
        if first["type"] == "model_type":
            raise _refuse(path, number, 'is not a triage record (a JSON object with an "image")') from None
        where, problem = first_problem(exc, "record")
        raise _refuse(path, number, f"is not a triage record ({where}: {problem})") from None


class _Scan:
    """One pass over a results file: its records in order, then where a torn last line starts (if any)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.torn_at: int | None = None

    def __iter__(self) -> Iterator[tuple[bytes, RecordHead]]:
        if not self.path.exists():
            return
        if not self.path.is_file():
            raise ResultsFileError(f"{self.path} is not a regular file; choose a file path for --out")
        try:
            with self.path.open("rb") as handle:
                offset = 0
                for number, line in enumerate(handle, start=1):
                    if not line.endswith(b"\n"):  # the last line, unfinished
                        if not _is_torn(line):
                            raise _refuse(
                                self.path, number, "is not JSON (nor the start of a record cut short)"
                            )
                        self.torn_at = offset
                        return
                    offset += len(line)
                    if line.strip():  # a blank line carries nothing
                        yield line, _parse(self.path, number, line)
        except OSError as exc:
            raise ResultsFileError(f"cannot read {self.path}: {exc.strerror or exc}") from exc

    def cut_torn_line(self) -> None:
        """Remove the torn last line found by the pass (the caller holds the lock: nothing was appended since)."""
        if self.torn_at is None:
            return
        try:
            with self.path.open("r+b") as handle:
                handle.truncate(self.torn_at)
        except OSError as exc:
            raise OutputWriteError(
                f"cannot cut the torn last line of {self.path}: {exc.strerror or exc}"
            ) from exc


def read_outcomes(path: Path, *, repair: bool = True) -> dict[str, Outcome]:
    """Each image's outcome in ``path`` (its last line wins). Every line is checked before anything is
    changed; then a torn last line is cut (``repair``: call it under :class:`ResultsLock`) or ignored."""
    scan = _Scan(path)
    outcomes = {head.image: head.outcome for _, head in scan}
    if repair:
        scan.cut_torn_line()
    return outcomes


def check_same_batch(path: Path, outcomes: dict[str, Outcome], images: list[str], root: Path | None) -> None:
    """Refuse to add a folder's results to a file holding another folder's: the page and the cautions
    would mix both, and a path relative to its folder (``good_1.png``) would no longer say which.

    A recorded image belongs to this batch when it is one of ``images`` (a symbolic link is recorded
    by its target) or lies under ``root`` (a watched folder's images may have been moved away since).
    """
    if not outcomes:
        return
    wanted = set(images)
    for image in outcomes:
        if image in wanted or (root is not None and Path(image).is_relative_to(root)):
            continue
        where = f"outside {root}" if root is not None else "not in this batch"
        raise ResultsFileError(
            f"{path} holds results of other images ({image}, {where}); the file is left untouched. "
            "Give this batch its own results file (--out), or the same folder again to resume."
        )


def read_records(path: Path) -> list[dict[str, Any]]:
    """The last record of each image in ``path`` as written, in order of first appearance; never writes
    (a torn last line, perhaps a write in progress, is left out)."""
    last = {head.image: line for line, head in _Scan(path)}
    return [json.loads(line) for line in last.values()]


def read_finished(path: Path, retry_errors: bool) -> set[str]:
    """Images already recorded in ``path`` (not those whose last line is an error, with ``retry_errors``);
    a torn last line is cut."""
    outcomes = read_outcomes(path)
    return {image for image, outcome in outcomes.items() if not (retry_errors and outcome == "error")}


class JsonlWriter:
    """Appends records one line at a time, flushed and fsynced; safe from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise OutputWriteError(f"cannot open {path} for appending: {exc.strerror or exc}") from exc

    async def write(self, record: TriageRecord) -> None:
        """Append ``record`` (fsync runs off the event loop)."""
        line = record.model_dump_json(exclude={"report": {"heatmap_png"}}) + "\n"
        await asyncio.to_thread(self.append, line)

    def append(self, line: str) -> None:
        """Append one finished line and make it durable."""
        with self._lock:
            try:
                self._handle.write(line)
                self._handle.flush()
                os.fsync(self._handle.fileno())
            except OSError as exc:
                raise OutputWriteError(
                    f"cannot write to {self.path}: {exc.strerror or exc}; lines already written are kept"
                ) from exc

    def close(self) -> None:
        """Close the file, after any append in progress."""
        # after a failed write (already raised as OutputWriteError) closing flushes and fails again;
        # the torn tail it may leave is cut on resume
        with self._lock, contextlib.suppress(OSError):
            self._handle.close()


class ResultsLock:
    """An exclusive OS lock on ``<out>.lock`` for one run; a second holder gets :class:`ResultsLockedError`."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = lock_path(out)
        self._handle: IO[bytes] | None = None

    def acquire(self) -> None:
        """Take the lock now or raise :class:`ResultsLockedError` (never waits)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("a+b")
        except OSError as exc:
            raise OutputWriteError(f"cannot create the lock file {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ResultsLockedError(
                f"another triage run{self._holder()} is writing to {self.out}; wait for it to finish "
                "or choose another --out"
            ) from None
        except OSError as exc:
            handle.close()
            raise OutputWriteError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
        with contextlib.suppress(OSError):  # the pid is only for the message of a second run
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n".encode())
            handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Let the next run in (closing the file drops the lock)."""
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None

    def _holder(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            return f" (pid {int(self.path.read_text().strip())})"
        return ""

    def __enter__(self) -> ResultsLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()
