"""Triage a folder of images as an agent tool: what an MLOps agent or a chat user asks of a batch.

``riad triage`` for a model: every image of a folder against the same references (or a registered
product), results appended to a JSONL file with its HTML page beside it, and a short reply the model
can act on: the counts, the batch's cautions (most flagged images peaking at one place), and the
anomalous and uncertain images worst first, each with its score and why. The folder, the references
and the results file must lie inside the allowed roots (a results file may also lie in the data
directory's ``triage/`` folder, where the default goes: a new file per call). One call inspects at
most ``limit`` images not yet in the results file (a tool call should come back); the next call
naming the same file goes on. A refusal is one typed line; nothing is raised to the agent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from riad_agent.errors import OutputWriteError, RiadError
from riad_agent.imaging import confined_path
from riad_agent.tools.common import OnComponents, validation_error_text
from riad_agent.tools.products import ToolReply

if TYPE_CHECKING:
    from riad_agent.graphs.triage import TriageSummary

TRIAGE = "triage_images"

TRIAGE_DESCRIPTION = (
    "Inspect every image in a folder against the same normal references (or a registered product, "
    "named as the category) and write the results to a JSONL file with an HTML page. Returns the counts "
    "(anomalous / uncertain / normal / errors), patterns across the batch (e.g. most flagged images "
    "peaking at one place: a recurring defect, or normal variation the references lack) and the "
    "anomalous and uncertain images worst first, with scores and reasons. Use it for a batch; use "
    "inspect_industrial_image for one image."
)

#: At most this many reference images in one triage call (as ``riad triage --max-references``).
MAX_TRIAGE_REFERENCES = 50

#: Images inspected per call by default: a tool call should come back (about a minute on 2 CPU cores
#: without the reasoner); a later call with the same results file goes on where this one stopped.
MAX_IMAGES_PER_CALL = 200


class TriageArgs(BaseModel):
    """Arguments of ``triage_images``."""

    model_config = ConfigDict(extra="forbid")

    folder: str = Field(
        min_length=1, description="A folder of images (searched recursively), inside the allowed roots."
    )
    category: str | None = Field(
        default=None,
        max_length=128,
        description="A registered product or knowledge category shared by every image.",
    )
    references: list[str] = Field(
        default_factory=list,
        max_length=MAX_TRIAGE_REFERENCES,
        description="Normal reference image files of the same product (paths).",
    )
    out: str | None = Field(
        default=None,
        description="The results JSONL file (inside the allowed roots); run again with the same file to resume. "
        "Default: a new file under the data directory.",
    )
    reasoner: Literal["never", "uncertain", "always"] = Field(
        default="uncertain",
        description="When the latent reasoner runs: never, for uncertain images, or always.",
    )
    listed: int = Field(
        default=10,
        ge=0,
        le=100,
        description="At most this many anomalous and this many uncertain images named.",
    )
    limit: int = Field(
        default=MAX_IMAGES_PER_CALL,
        ge=1,
        le=10_000,
        description="At most this many images not yet in the results file are inspected in this call; call "
        "again with the same results file to go on.",
    )


class TriageTool(OnComponents):
    """``triage_images`` on one inspector's components (the same registry, policy and expert)."""

    async def acall(
        self, arguments: dict[str, Any], progress: Callable[[dict[str, Any]], None] | None = None
    ) -> ToolReply:
        """Run the triage; every refusal comes back as a reply with ``error=True``.

        ``progress`` receives the triage graph's ``{"stage": "triage", "done", "total", "image"}`` events.
        """
        try:
            args = TriageArgs.model_validate(arguments)
            return ToolReply(await self.triage(args, progress))
        except ValidationError as exc:
            return ToolReply(validation_error_text(exc), True)
        except RiadError as exc:
            return ToolReply(exc.one_line(), True)

    async def triage(self, args: TriageArgs, progress: Callable[[dict[str, Any]], None] | None = None) -> str:
        """Triage ``args.folder`` and say what came out (see the module docstring)."""
        from riad_agent.graphs.triage_results import read_records
        from riad_agent.triage_html import write_triage_html

        policy = self.components.policy
        folder = confined_path(args.folder, policy, "folder")
        references = [confined_path(ref, policy, "reference image") for ref in args.references]
        out = self._out(args, folder)
        try:
            summary, left = await self._run(args, folder, references, out, progress)
        except BaseException:
            if args.out is None:  # a new file nothing was written to: leave no empty file behind
                _drop_if_empty(out)
            raise
        page = out.with_suffix(".html")
        write_triage_html(out, page, policy=policy)
        records = read_records(out)
        judged = (
            f" ({await asyncio.to_thread(self._judged_as, records, args.category)})" if args.category else ""
        )
        lines = [
            f"triaged {summary.total} images of {folder}"
            + judged
            + f": {summary.anomalous} anomalous, {summary.uncertain} uncertain, {summary.normal} normal, "
            f"{summary.errors} errors"
            + (f", {summary.skipped} already in the results file" if summary.skipped else "")
            + f". Results: {out}; page: {page}."
        ]
        if left:
            lines.append(
                f"{left} images of the folder are not inspected yet: call again with out={str(out)!r} to go on."
            )
        lines += [f"Caution: {caution}" for caution in summary.cautions]
        lines += _listed("Anomalous, worst first", records, "anomalous", args.listed)
        lines += _listed("Uncertain (a person should look)", records, "uncertain", args.listed)
        failed = [r for r in records if r.get("error")]
        if failed:
            first = failed[0]["error"]
            lines.append(
                f"Errors: {len(failed)}, e.g. {failed[0].get('path') or failed[0]['image']}: "
                f"{first.get('type', 'error')}: {first.get('message', '')}"
            )
        return "\n".join(lines)

    async def _run(
        self,
        args: TriageArgs,
        folder: Path,
        references: list[Path],
        out: Path,
        progress: Callable[[dict[str, Any]], None] | None,
    ) -> tuple[TriageSummary, int]:
        """Run the triage graph on at most ``args.limit`` images of ``folder`` not yet in ``out``; the
        summary and how many images are left for the next call."""
        from riad_agent.graphs.triage import TriageJob, build_triage_graph, list_images, run_triage
        from riad_agent.graphs.triage_results import read_records

        components = self.components
        images = await asyncio.to_thread(list_images, folder)
        done = {str(record["image"]) for record in read_records(out)} if out.is_file() else set()
        pending = [image for image in images if image not in done]
        chosen = [image for image in images if image in done] + pending[: args.limit]
        left = len(pending) - min(len(pending), args.limit)
        job = TriageJob(
            images=[Path(image) for image in chosen],
            root=folder,
            out=out,
            category=args.category,
            references=references,
            reasoner=args.reasoner,
        )
        graph = build_triage_graph(components=components, progress=progress)
        return await run_triage(job, graph), left

    def _judged_as(self, records: list[dict[str, Any]], category: str) -> str:
        """What the images were judged as: the registered product the records name (as stored), else
        the knowledge category they name (as resolved), else the category as given."""
        named = {str(record["product"]) for record in records if record.get("product")}
        if len(named) != 1:
            return f"category {category}"
        name = named.pop()
        registry = self.components.products.peek()  # opened by the graph when a product was recalled
        registered = registry is not None and any(product.name == name for product in registry.list())
        return f"{'product' if registered else 'category'} {name}"

    def _out(self, args: TriageArgs, folder: Path) -> Path:
        """The results file: ``args.out`` inside the allowed roots or the data directory's ``triage/``
        (where the default goes, so a default file can be named again to resume), else a new one there."""
        results = (self.components.settings.data_dir / "triage").resolve()
        if args.out is not None:
            given = Path(args.out).expanduser().absolute().resolve(strict=False)
            out = (
                given
                if given.is_relative_to(results)
                else confined_path(args.out, self.components.policy, "results file")
            )
        else:
            out = _new_results_file(results, folder.name or "images")
        if out.suffix != ".jsonl":
            raise OutputWriteError(f"the results file must end in .jsonl, got {out.name!r}")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputWriteError(f"cannot create {out.parent}: {exc.strerror or exc}") from exc
        return out


def _drop_if_empty(out: Path) -> None:
    """Remove ``out`` (and its lock file) when it holds nothing."""
    try:
        if out.stat().st_size == 0:
            out.unlink()
            out.with_name(out.name + ".lock").unlink(missing_ok=True)
    except OSError:
        pass


def _new_results_file(results: Path, name: str) -> Path:
    """A results file of its own under ``results``, reserved by creating it: two calls in the same
    second (or two processes) never resume each other's file."""
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        out = results / f"{name}-{stamp}{f'-{attempt + 1}' if attempt else ''}.jsonl"
        try:
            out.open("x").close()
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputWriteError(f"cannot create {out}: {exc.strerror or exc}") from exc
        return out
    raise OutputWriteError(f"no free results file name under {results} for {name}-{stamp}")


def _listed(title: str, records: list[dict[str, Any]], verdict: str, limit: int) -> list[str]:
    """``title``: the records of ``verdict``, highest score first, at most ``limit`` (and how many more)."""
    chosen = sorted(
        (r for r in records if r.get("verdict") == verdict and not r.get("error")),
        key=lambda r: -float(r.get("score") or 0.0),
    )
    if not chosen or limit == 0:
        return []
    lines = [f"{title}:"]
    for record in chosen[:limit]:
        name = record.get("path") or record["image"]
        notes = []
        if record.get("defect_type"):
            notes.append(("looks like " if verdict == "uncertain" else "") + str(record["defect_type"]))
        regions = record.get("regions") or []
        if regions:
            x0, y0, x1, y1 = regions[0]["box"]
            notes.append(f"x {x0}-{x1}, y {y0}-{y1}")
        if verdict == "uncertain" and record.get("reason"):
            notes.append(str(record["reason"]))
        lines.append(
            f"- {name} {float(record.get('score') or 0.0):.2f}" + (f" ({'; '.join(notes)})" if notes else "")
        )
    if len(chosen) > limit:
        lines.append(f"- and {len(chosen) - limit} more (see the results file)")
    return lines
