"""Batch triage throughput: images per second at several worker counts (``riad bench``), and the goals of
``riad bench triage``: the fast path against the bare expert on the same images, and the live folder."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from riad_agent.components import Components
from riad_agent.graphs.triage import TriageJob, build_triage_graph, run_triage
from riad_agent.protocols import (
    Expert,
    KnowledgeBase,
    Reasoner,
)
from riad_agent.schemas import InspectionOptions
from riad_agent.settings import Settings


class TriageThroughput(BaseModel):
    """One triage run over the same folder."""

    workers: int
    images: int
    errors: int
    seconds: float
    images_per_s: float


def measure_triage(
    settings: Settings,
    knowledge: KnowledgeBase,
    expert: Expert,
    reasoner: Reasoner,
    folder: Path,
    references: list[Path],
    category: str,
    workers: list[int],
    out_dir: Path,
    latent_steps: int,
) -> list[TriageThroughput]:
    """Run the triage graph over ``folder`` once per worker count (fresh JSONL each time)."""
    from riad_agent.components import build_components

    components = build_components(settings, knowledge=knowledge, expert=expert, reasoner=reasoner)
    graph = build_triage_graph(components=components)
    results: list[TriageThroughput] = []
    for count in workers:
        job = TriageJob(
            images=folder,
            out=out_dir / f"triage-{count}.jsonl",
            category=category,
            references=references,
            options=InspectionOptions(latent_steps=latent_steps),
            concurrency=count,
            heatmaps=False,
        )
        started = time.perf_counter()
        summary = asyncio.run(run_triage(job, graph))
        seconds = time.perf_counter() - started
        results.append(
            TriageThroughput(
                workers=count,
                images=summary.inspected,
                errors=summary.errors,
                seconds=seconds,
                images_per_s=summary.inspected / seconds if seconds > 0 else 0.0,
            )
        )
    return results


# ---- `riad bench triage`: the fast path against the bare expert, and the live folder ---------------


class TriageGoal(BaseModel):
    """One goal of issue 20, measured."""

    name: str
    measured: float
    target: float
    unit: str
    higher_is_better: bool

    @property
    def met(self) -> bool:
        return self.measured >= self.target if self.higher_is_better else self.measured <= self.target


class TriageSpeed(BaseModel):
    """Expert-only triage against the bare expert on the same images of one size."""

    size: int
    images: int
    references: int
    expert_s: float
    triage_s: float
    triage_images_per_s: float
    overhead: float
    verdicts: dict[str, int]


class RaySpeed(BaseModel):
    """The same triage on Ray Data with 1 and with 2 actors (a local cluster of 2 CPUs)."""

    images: int
    one_worker_s: float
    two_workers_s: float
    speedup: float
    warm_one_worker_s: float = Field(description="First record to last: the actors already built.")
    warm_two_workers_s: float
    warm_speedup: float
    identical: bool


class TriageBenchResult(BaseModel):
    """Everything ``riad bench triage`` measured, with the goals."""

    threads: int
    expert: str
    speeds: list[TriageSpeed]
    watch_latency_s: list[float]
    ray: RaySpeed | None = None
    goals: list[TriageGoal]


def ray_speed(settings: Settings, folder: Path, references: list[Path], root: Path) -> RaySpeed:
    """Seconds of ``--ray`` with 1 and 2 actors (each run starts its actors: a fixed cost included) and
    whether both wrote the same records (``elapsed_ms`` aside)."""
    import json

    import ray

    from riad_agent.graphs.triage_ray import run_ray_triage

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        seconds, warm, records = {}, {}, {}
        for workers in (1, 2):
            out = root / f"ray-{workers}.jsonl"
            job = TriageJob(
                images=folder,
                out=out,
                references=references,
                reasoner="never",
                heatmaps=False,
                concurrency=workers,
            )
            stamps: list[float] = []

            def stamp(_: dict[str, Any], stamps: list[float] = stamps) -> None:
                stamps.append(time.perf_counter())

            started = time.perf_counter()
            run_ray_triage(job, "auto", settings=settings, progress=stamp)
            seconds[workers] = time.perf_counter() - started
            warm[workers] = stamps[-1] - stamps[0] if len(stamps) > 1 else seconds[workers]
            lines = [json.loads(line) for line in out.read_text().splitlines()]
            records[workers] = sorted(
                ({k: v for k, v in r.items() if k != "elapsed_ms"} for r in lines),
                key=lambda r: str(r["image"]),
            )
    finally:
        ray.shutdown()
    return RaySpeed(
        images=len(records[1]),
        one_worker_s=seconds[1],
        two_workers_s=seconds[2],
        speedup=seconds[1] / seconds[2],
        warm_one_worker_s=warm[1],
        warm_two_workers_s=warm[2],
        warm_speedup=warm[1] / max(warm[2], 1e-9),
        identical=records[1] == records[2],
    )


def write_set(
    root: Path, size: int, images: int, references: int, category: str = "synthetic/washer"
) -> tuple[Path, list[Path]]:
    """Generated PNGs of one size: ``images`` to triage (every third one defective) and normal references."""
    from riad_agent.data.synthetic import DEFECTS, generate_sample

    folder, refs = root / f"images-{size}", root / f"references-{size}"
    folder.mkdir(parents=True, exist_ok=True)
    refs.mkdir(parents=True, exist_ok=True)
    kinds = [defect for defect in DEFECTS if defect not in ("misplaced", "bent")]
    for index in range(images):
        defect = kinds[index % len(kinds)] if index % 3 == 0 else None
        generate_sample(category, defect, 1000 + index, size).image.save(folder / f"{index:03d}.png")
    paths = []
    for index in range(references):
        path = refs / f"ref-{index:02d}.png"
        generate_sample(category, None, index, size).image.save(path)
        paths.append(path)
    return folder, paths


def bare_expert_seconds(expert: Expert, images: list[Path], references: list[Path]) -> float:
    """Seconds to decode each image and run ``expert.analyse`` on it, one after another, in one worker
    thread as triage runs it (torch in a worker thread measured faster than in the main one here)."""
    from concurrent.futures import ThreadPoolExecutor

    from riad_agent.imaging import load_image, working_copy

    refs = [working_copy(load_image(path).image) for path in references]

    def run() -> float:
        started = time.perf_counter()
        for path in images:
            expert.analyse(working_copy(load_image(path).image), refs)
        return time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def fast_triage_seconds(
    components: Components, folder: Path, references: list[Path], out: Path
) -> tuple[float, dict[str, int]]:
    """Seconds of an expert-only triage run (``--reasoner never``, no heatmaps) and its verdict counts."""
    graph = build_triage_graph(components=components)
    job = TriageJob(images=folder, out=out, references=references, reasoner="never", heatmaps=False)
    started = time.perf_counter()
    summary = asyncio.run(run_triage(job, graph))
    seconds = time.perf_counter() - started
    counts = {
        "anomalous": summary.anomalous,
        "normal": summary.normal,
        "uncertain": summary.uncertain,
        "errors": summary.errors,
    }
    return seconds, counts


def watch_latencies(
    components: Components, image: Path, references: list[Path], root: Path, drops: int = 3
) -> list[float]:
    """Seconds from a file renamed into a watched, idle folder to its line in the results."""
    import shutil
    import threading

    from riad_agent.graphs.triage_watch import run_watch

    folder, out = root / "watched", root / "watched.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    job = TriageJob(images=folder, out=out, references=references, reasoner="never", heatmaps=False)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(run_watch(job, components, stop)))
    thread.start()
    latencies = []
    try:
        time.sleep(1.0)  # idle
        for index in range(drops):
            temp = folder / f".drop-{index}.png"
            shutil.copyfile(image, temp)
            started = time.perf_counter()
            temp.rename(folder / f"drop-{index}.png")  # the documented way to drop a file: write, then rename
            while not out.exists() or len(out.read_text().splitlines()) <= index:
                if time.perf_counter() - started > 30:
                    raise TimeoutError("the watched file never appeared in the results")
                time.sleep(0.01)
            latencies.append(time.perf_counter() - started)
            time.sleep(1.0)  # idle again
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=60)
    return latencies


def run_triage_bench(
    settings: Settings,
    root: Path,
    *,
    images: int = 24,
    large_images: int = 8,
    references: int = 8,
    threads: int = 2,
    with_ray: bool = False,
) -> TriageBenchResult:
    """The fast path at 256 and 1024 px against the bare expert, and the live folder's latency."""
    import torch

    from riad_agent.components import build_components
    from riad_agent.expert import open_expert

    torch.set_num_threads(threads)
    expert = open_expert(settings)
    components = build_components(settings, expert=expert)
    speeds = []
    for size, count in ((256, images), (1024, large_images)):
        folder, refs = write_set(root, size, count, references)
        files = sorted(folder.glob("*.png"))
        bare_expert_seconds(expert, files[:1], refs)  # warm-up: the bank is built once, as a triage run does
        expert_s = bare_expert_seconds(expert, files, refs)
        triage_s, verdicts = fast_triage_seconds(components, folder, refs, root / f"triage-{size}.jsonl")
        speeds.append(
            TriageSpeed(
                size=size,
                images=count,
                references=references,
                expert_s=expert_s,
                triage_s=triage_s,
                triage_images_per_s=count / triage_s,
                overhead=triage_s / expert_s,
                verdicts=verdicts,
            )
        )
    small_folder, small_refs = root / "images-256", sorted((root / "references-256").glob("*.png"))
    latencies = watch_latencies(components, sorted(small_folder.glob("*.png"))[1], small_refs, root)
    goals = [
        TriageGoal(
            name="triage 256 px, 8 references",
            measured=speeds[0].triage_images_per_s,
            target=5.0,
            unit="images/s",
            higher_is_better=True,
        ),
        TriageGoal(
            name="triage 1024 px, 8 references",
            measured=speeds[1].triage_images_per_s,
            target=2.5,
            unit="images/s",
            higher_is_better=True,
        ),
        TriageGoal(
            name="overhead over the bare expert (256 px)",
            measured=speeds[0].overhead,
            target=1.3,
            unit="x",
            higher_is_better=False,
        ),
        TriageGoal(
            name="overhead over the bare expert (1024 px)",
            measured=speeds[1].overhead,
            target=1.3,
            unit="x",
            higher_is_better=False,
        ),
        TriageGoal(
            name="watch: drop to record at idle (worst)",
            measured=max(latencies),
            target=2.0,
            unit="s",
            higher_is_better=False,
        ),
    ]
    ray = ray_speed(settings, small_folder, small_refs, root) if with_ray else None
    if ray is not None:
        goals.append(
            TriageGoal(
                name="--ray 2 workers vs 1, warm actors (256 px)",
                measured=ray.warm_speedup,
                target=1.6,
                unit="x",
                higher_is_better=True,
            )
        )
    return TriageBenchResult(
        threads=threads,
        expert=expert.backbone_id,
        speeds=speeds,
        watch_latency_s=latencies,
        ray=ray,
        goals=goals,
    )
