"""A live folder: images triaged as they arrive, results appended to the same JSONL as a batch run.

The results file is the memory: on start every image it already records is skipped, so a restart
(even after ``kill -9``) neither re-inspects nor loses an image; the results lock keeps a second
watcher (or a batch run) off the same file. The folder is polled (``poll_s``, 0.2 s by default).

A file is read only once it is complete: its size and modification time must be the same at two
polls in a row, and names that begin with ``.`` or do not end in an image suffix are never read, so
a writer that writes ``.part.png`` or ``part.png.tmp`` and renames it when done (atomic on one file
system) is never read half-done. Should a slow writer still be caught mid-file, an image that fails
to decode while its file is still changing is not recorded; it is read again once it is stable.

:func:`watch_folder` returns when ``stop`` is set (the CLI sets it on SIGINT and SIGTERM): images
in flight finish and are recorded, then the file is closed and the lock released.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from riad_agent.components import Components
from riad_agent.errors import InvalidRequestError
from riad_agent.graphs.inspection import build_inspection_graph
from riad_agent.graphs.triage import IMAGE_SUFFIXES, TriageJob, TriageSummary, image_triage
from riad_agent.graphs.triage_image import ImageTriage
from riad_agent.graphs.triage_results import JsonlWriter, Outcome, ResultsLock, read_outcomes

#: Seconds between two looks at the folder.
POLL_S = 0.2

Stamp = tuple[int, int]  # (size, mtime_ns)


def _is_candidate(path: Path, suffixes: set[str]) -> bool:
    return path.suffix.lower() in suffixes and not path.name.startswith(".")


def _stamp(path: Path) -> Stamp | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns)


def scan(folder: Path, suffixes: set[str]) -> dict[str, Stamp]:
    """The candidate images under ``folder`` (recursive) and their (size, mtime) stamps."""
    found = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in files:
            path = Path(root, name)
            if _is_candidate(path, suffixes):
                stamp = _stamp(path)
                if stamp is not None and stamp[0] > 0:
                    found[str(path.resolve())] = stamp
    return found


async def watch_folder(
    folder: Path,
    out: Path,
    triage: ImageTriage,
    stop: asyncio.Event,
    *,
    suffixes: set[str],
    concurrency: int = 2,
    retry_errors: bool = False,
    poll_s: float = POLL_S,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[dict[str, Outcome], int]:
    """Triage images arriving in ``folder`` until ``stop`` is set; (every outcome of the file, how many
    images this run recorded)."""
    lock = ResultsLock(out)
    await asyncio.to_thread(lock.acquire)
    try:
        outcomes = await asyncio.to_thread(read_outcomes, out)
        writer = await asyncio.to_thread(JsonlWriter, out)
        semaphore = asyncio.Semaphore(concurrency)
        in_flight: dict[str, asyncio.Task[None]] = {}
        seen: dict[str, Stamp] = {}
        done = 0
        # errors of earlier runs are retried once (as a batch run does), not on every poll
        retry = (
            {image for image, outcome in outcomes.items() if outcome == "error"} if retry_errors else set()
        )

        def _recorded(image: str) -> bool:
            return image in outcomes and image not in retry

        async def one(image: str, stamp: Stamp) -> None:
            nonlocal done
            async with semaphore:
                record = await triage.record(image)
                if record.error is not None and _stamp(Path(image)) != stamp:
                    return  # still being written: read it again once it is stable
                await writer.write(record)
                outcomes[image] = record.outcome
                retry.discard(image)
                done += 1
                if progress is not None:
                    progress({"stage": "watch", "done": done, "image": image})

        try:
            while not stop.is_set():
                current = await asyncio.to_thread(scan, folder, suffixes)
                for image in [image for image, task in in_flight.items() if task.done()]:
                    in_flight.pop(image).result()  # an output write failure ends the watch
                for image, stamp in current.items():
                    if _recorded(image) or image in in_flight or seen.get(image) != stamp:
                        continue
                    in_flight[image] = asyncio.create_task(one(image, stamp))
                seen = {image: stamp for image, stamp in current.items() if not _recorded(image)}
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=poll_s)
            await asyncio.gather(*in_flight.values())
        finally:
            for task in in_flight.values():
                task.cancel()
            await asyncio.gather(*in_flight.values(), return_exceptions=True)
            await asyncio.to_thread(writer.close)
            triage.close()
    finally:
        await asyncio.to_thread(lock.release)
    return outcomes, done


async def run_watch(
    job: TriageJob,
    components: Components,
    stop: asyncio.Event,
    *,
    poll_s: float = POLL_S,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> TriageSummary:
    """Watch ``job.images`` (a folder) until ``stop``; the summary counts the folder's images recorded."""
    folder = job.images
    if not isinstance(folder, Path) or not folder.is_dir():
        raise InvalidRequestError(f"{folder} is not a folder to watch")
    folder = folder.resolve()
    inspection = build_inspection_graph(components=components, checkpointer=False)
    triage = image_triage(job.model_copy(update={"root": job.root or folder}), components, inspection, [])
    outcomes, done = await watch_folder(
        folder,
        job.out,
        triage,
        stop,
        suffixes=IMAGE_SUFFIXES,
        concurrency=job.concurrency,
        retry_errors=job.retry_errors,
        poll_s=poll_s,
        progress=progress,
    )
    mine = [outcome for image, outcome in outcomes.items() if Path(image).is_relative_to(folder)]
    return TriageSummary.counted(mine, total=len(mine), skipped=len(mine) - done, inspected=done, out=job.out)
