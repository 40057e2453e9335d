"""One image of a triage job to its JSONL record: the fast path, then the whole graph when asked.

Every image goes through :class:`~riad_agent.graphs.triage_fast.FastTriage` (decode in a thread pool,
then expert, recognition and typing). The latent reasoner (the inspection graph with the reasoner on)
runs after it for every image (``always``), for ``uncertain`` ones (``uncertain``, the default) or
never. A bad image becomes an ``error`` record; so does an unexpected exception (logged with its
traceback), so one image never ends a batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from riad_agent.components import Components
from riad_agent.errors import OutputWriteError, RiadError, UnknownCategoryError, UnknownProductError
from riad_agent.graphs.inspection import run_inspection
from riad_agent.graphs.triage_fast import FastTriage, ReasonerMode, triage_record, wants_reasoner
from riad_agent.graphs.triage_results import TriageRecord
from riad_agent.schemas import InspectionOptions, InspectionRequest

logger = logging.getLogger(__name__)


def relative_path(image: str, root: Path | None) -> str:
    """``image`` relative to the triaged ``root`` in POSIX form (the absolute path when outside it)."""
    if root is not None:
        try:
            return Path(image).relative_to(root).as_posix()
        except ValueError:
            pass
    return Path(image).as_posix()


def common_root(images: list[str]) -> Path | None:
    """The deepest folder holding every image of a list (None for an empty list)."""
    if not images:
        return None
    return Path(os.path.commonpath([str(Path(image).parent) for image in images]))


def heatmap_path(out: Path, image: str) -> Path:
    """Where an image's heatmap goes: ``<out stem>.heatmaps/<name>-<hash of its path>.png``."""
    folder = out.with_name(out.stem + ".heatmaps")
    digest = hashlib.sha1(image.encode("utf-8")).hexdigest()[:10]
    return folder / f"{Path(image).stem}-{digest}.png"


def _save_heatmap(out: Path, image: str, png: bytes) -> str:
    path = heatmap_path(out, image)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return str(path)


class ImageTriage:
    """Turns image paths into records for one job (shared by the batch run and the live folder)."""

    def __init__(
        self,
        components: Components,
        inspection: CompiledStateGraph[Any, Any, Any, Any],
        *,
        out: Path,
        root: Path | None,
        category: str | None,
        references: list[str],
        options: InspectionOptions,
        reasoner: ReasonerMode,
        heatmaps: bool,
        decoders: int = 2,
    ) -> None:
        self.inspection = inspection
        self.out, self.root = out, root
        self.category = category
        self.references: list[str | bytes] = list(references)
        self.mode: ReasonerMode = reasoner if options.use_reasoner else "never"
        self.options = options.model_copy(update={"return_heatmap": heatmaps})
        self.fast = FastTriage(
            components, category=category, references=references, options=options, heatmap=heatmaps
        )
        self._pool = ThreadPoolExecutor(max_workers=decoders, thread_name_prefix="triage-decode")

    def close(self) -> None:
        """Stop the decoding threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def record(self, image: str) -> TriageRecord:
        """The record of ``image``: its verdict and evidence, or its error."""
        start = time.perf_counter()
        try:
            decoded = await asyncio.get_running_loop().run_in_executor(self._pool, self.fast.decode, image)
            result = await asyncio.to_thread(self.fast.inspect, decoded)
            report, graph = result.report, False
            if wants_reasoner(self.mode, report):
                # 'uncertain': the graph's own rule, so a reasoner that only repeats the expert's
                # verdict (the builtin model) is not run for nothing (explain.reasoner_needed)
                when = "always" if self.mode == "always" else "needed"
                options = self.options.model_copy(update={"use_reasoner": True, "reasoner_when": when})
                request = InspectionRequest(
                    image=image, category=self.category, references=list(self.references), options=options
                )
                report, graph = await run_inspection(self.inspection, request), True
            heatmap = None
            if report.heatmap_png:
                heatmap = await asyncio.to_thread(_save_heatmap, self.out, image, report.heatmap_png)
            return triage_record(
                image,
                relative_path(image, self.root),
                report,
                result,
                graph=graph,
                heatmap=heatmap,
                elapsed_ms=_elapsed(start),
            )
        except (OutputWriteError, UnknownCategoryError, UnknownProductError):
            raise  # the output, or the run's category (wrong for every image): the run ends, typed
        except RiadError as exc:
            return self._error(image, type(exc).__name__, exc.message, start)
        except OSError as exc:  # the heatmap file
            raise OutputWriteError(f"cannot write the heatmap of {image}: {exc.strerror or exc}") from exc
        except Exception as exc:  # a bug on one image must not end the batch: record it
            logger.exception("inspection of %s failed", image)
            return self._error(image, "InternalError", f"{type(exc).__name__}: {exc}", start)

    def _error(self, image: str, kind: str, message: str, start: float) -> TriageRecord:
        return TriageRecord(
            image=image,
            path=relative_path(image, self.root),
            error={"type": kind, "message": message},
            elapsed_ms=_elapsed(start),
        )


def _elapsed(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)
