"""``run_bench``: stage times, peak memory, triage throughput and every speed goal as a ratio.

Everything runs in one process on the embedded default: the packaged knowledge base in embedded
Qdrant under a temporary data dir, the configured vision expert and the builtin VLM (the reduced CI
run uses a tiny random Qwen2-VL instead; the model is reported as ``vlm``).
The latent loop's goals (cached vs naive loop, inspection vs plain forward+decode) come from
:mod:`riad_agent.bench.latent`, measured in the same run.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from riad_agent.bench.latent import LatentBenchConfig, LatentBenchResult, run_latent_benchmark
from riad_agent.bench.stages import STAGES, StageSamples, inspect_once
from riad_agent.bench.stats import StageTiming, summarise
from riad_agent.bench.triage_throughput import TriageThroughput, measure_triage
from riad_agent.components import build_components
from riad_agent.data.synthetic import DEFECTS, generate_sample
from riad_agent.graphs.inspection import build_inspection_graph, run_inspection
from riad_agent.models.base import VisionLanguageModel
from riad_agent.models.loading import open_vlm
from riad_agent.models.tiny import build_tiny_qwen2_vl
from riad_agent.reasoning import LatentReasoner
from riad_agent.reasoning.config import config_for
from riad_agent.schemas import InspectionOptions, InspectionRequest
from riad_agent.settings import Settings

TINY_VLM = "tiny-random-qwen2-vl"
CATEGORY = "synthetic/washer"
BenchProgress = Callable[[str], None]


class BenchConfig(BaseModel):
    """What to run; ``reduced`` shrinks everything to finish well under a minute (CI)."""

    model_config = ConfigDict(extra="forbid")

    images: int = Field(default=20, ge=2, le=1000, description="Generated images timed per stage.")
    reduced: bool = False
    embedder: str | None = Field(default=None, description="None: 'hashing' when reduced, else 'minilm'.")
    image_size: int = Field(default=256, ge=64, le=1024)
    references: int = Field(default=4, ge=1, le=32)
    latent_steps: int = Field(default=10, ge=1, le=200)
    triage_images: int = Field(default=8, ge=1, le=200)
    workers: list[int] = Field(default_factory=lambda: [1, 2, 4])
    memory_images: int = Field(default=2, ge=1, le=20, description="Images of the tracemalloc pass.")
    threads: int = Field(default=1, ge=1, le=64, description="torch CPU threads.")
    vlm: str | None = Field(
        default=None, description="None: 'tiny' when reduced, else 'builtin'; or a model id."
    )
    seed: int = 0

    def effective_vlm(self) -> str:
        return self.vlm or ("tiny" if self.reduced else "builtin")

    def effective_embedder(self) -> str:
        return self.embedder or ("hashing" if self.reduced else "minilm")


class GoalRatio(BaseModel):
    """One performance goal: the measured value beside the target, as a ratio measured / target."""

    measured: float
    target: float
    unit: str
    higher_is_better: bool
    ratio: float
    met: bool


class MemoryUse(BaseModel):
    tracemalloc_peak_bytes: int = Field(description="Peak Python allocations over one inspection pass.")
    ru_maxrss_bytes: int = Field(description="Peak resident set size of the process so far.")


class BenchResult(BaseModel):
    """The benchmark's JSON."""

    vlm: str
    embedder: str
    expert: str
    config: BenchConfig
    stages: dict[str, StageTiming]
    total_median_ms: float
    memory: MemoryUse
    triage: list[TriageThroughput]
    goals: dict[str, GoalRatio]
    default_inspection_ms: StageTiming | None = Field(
        default=None,
        description="Whole-graph wall time of a default inspection (reasoner only when needed), warm.",
    )
    latent: LatentBenchResult
    seconds: float
    notes: list[str] = Field(default_factory=list)


def _goal(measured: float, target: float, unit: str, higher_is_better: bool) -> GoalRatio:
    ratio = measured / target if target else float("inf")
    met = measured >= target if higher_is_better else measured <= target
    return GoalRatio(
        measured=measured, target=target, unit=unit, higher_is_better=higher_is_better, ratio=ratio, met=met
    )


def latent_bench_config(config: BenchConfig) -> LatentBenchConfig:
    """The latent benchmark's size: its defaults, or a small model for the reduced run."""
    if not config.reduced:
        return LatentBenchConfig(
            steps=config.latent_steps, repeats=3, threads=config.threads, seed=config.seed
        )
    return LatentBenchConfig(
        hidden=128,
        layers=2,
        heads=4,
        kv_heads=2,
        intermediate=256,
        vision_embed=64,
        image_size=112,
        knowledge_hits=1,
        steps=3,
        perturbations=4,
        rationale_tokens=2,
        repeats=1,
        measure_memory=False,
        threads=config.threads,
        seed=config.seed,
    )


def _open_vlm(config: BenchConfig, settings: Settings) -> VisionLanguageModel:
    name = config.effective_vlm()
    if name == "tiny":
        return build_tiny_qwen2_vl("qwen2_vl", seed=config.seed, processor_max_pixels=128 * 128)
    return open_vlm(name, device="cpu", cache_dir=settings.model_cache_dir)


def _write_images(folder: Path, count: int, size: int, seed: int, defects: bool = True) -> list[Path]:
    """Generated washers; with ``defects`` every second one carries a defect (cycling the types)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        defect = DEFECTS[(i // 2) % len(DEFECTS)] if defects and i % 2 == 1 else None
        path = folder / f"{i:04d}.png"
        generate_sample(CATEGORY, defect, seed + 1000 + i, size).image.save(path)
        paths.append(path)
    return paths


def run_bench(config: BenchConfig, progress: BenchProgress | None = None) -> BenchResult:
    """Run every measurement and return the result (writes only under a temporary folder)."""
    say = progress or (lambda _: None)
    started = time.perf_counter()
    torch.set_num_threads(config.threads)
    images = 4 if config.reduced else config.images
    triage_images = 4 if config.reduced else config.triage_images
    steps = 2 if config.reduced else config.latent_steps
    embedder = config.effective_embedder()
    with tempfile.TemporaryDirectory(prefix="riad-bench-") as tmp:
        root = Path(tmp)
        settings = Settings(
            data_dir=root / "data", embedder=embedder, allowed_roots=[root], checkpointer="none"
        )
        say("generating images")
        reference_paths = _write_images(
            root / "references", config.references, config.image_size, 0, defects=False
        )
        paths = _write_images(root / "images", images, config.image_size, config.seed)
        triage_folder = root / "triage"
        _write_images(triage_folder, triage_images, config.image_size, config.seed + 500)

        from riad_agent.expert import open_expert
        from riad_agent.knowledge import open_knowledge_base

        say(f"opening the knowledge base ({embedder} embedder)")
        knowledge = open_knowledge_base(settings)
        try:
            expert = open_expert(settings)
            say(f"loading the VLM ({config.effective_vlm()})")
            vlm = _open_vlm(config, settings)
            reasoner = LatentReasoner(
                vlm,
                config_for(vlm, steps=steps, reward_threshold=1.0, plateau_patience=0, rationale_tokens=8),
            )
            components = build_components(settings, knowledge=knowledge, expert=expert, reasoner=reasoner)
            graph = build_inspection_graph(components=components, checkpointer=False)

            def request(
                index: int, path: Path, when: Literal["needed", "always"] = "always"
            ) -> InspectionRequest:
                return InspectionRequest(
                    image=str(path),
                    category=CATEGORY,
                    references=[str(p) for p in reference_paths],
                    options=InspectionOptions(latent_steps=steps, seed=index, reasoner_when=when),
                )

            say("warm-up (expert bank, model, store)")
            inspect_once(graph, request(0, paths[0]), StageSamples())
            samples = StageSamples()
            for index, path in enumerate(paths):
                say(f"stages: image {index + 1}/{len(paths)}")
                inspect_once(graph, request(index, path), samples)
            stages = {name: summarise(samples.samples[name]) for name in STAGES}

            say("default inspections (the reasoner only when needed)")
            walls = []
            for index, path in enumerate(paths):
                begun = time.perf_counter()
                asyncio.run(run_inspection(graph, request(index, path, "needed")))
                walls.append((time.perf_counter() - begun) * 1000.0)
            default_inspection = summarise(walls)

            say("peak memory (tracemalloc pass)")
            gc.collect()
            tracemalloc.start()
            try:
                for index, path in enumerate(paths[: config.memory_images]):
                    inspect_once(graph, request(index, path), StageSamples())
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            memory = MemoryUse(
                tracemalloc_peak_bytes=int(peak),
                ru_maxrss_bytes=int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024,
            )

            say("batch triage throughput")
            triage = measure_triage(
                settings,
                knowledge,
                expert,
                reasoner,
                triage_folder,
                reference_paths,
                CATEGORY,
                config.workers,
                root,
                steps,
            )
            expert_id = expert.backbone_id
            vlm_id = TINY_VLM if config.effective_vlm() == "tiny" else vlm.model_id
        finally:
            knowledge.close()

    say("latent loop: cached vs naive, inspection vs plain")
    latent = run_latent_benchmark(latent_bench_config(config), progress=lambda stage: say(f"latent: {stage}"))
    goals = {
        "latent_loop_speedup": _goal(latent.loop_speedup, 10.0, "x (naive / cached)", True),
        "inspection_vs_plain": _goal(latent.inspection_over_plain, 2.0, "x plain forward+decode", False),
        "expert_ms_per_image": _goal(stages["expert"].median_ms, 150.0, "ms", False),
        "knowledge_search_p50": _goal(stages["retrieval"].median_ms, 10.0, "ms", False),
        "inspection_seconds": _goal(
            sum(t.median_ms for t in stages.values()) / 1000.0, 3.0, "s per image", False
        ),
        "default_inspection_seconds": _goal(default_inspection.median_ms / 1000.0, 0.5, "s per image", False),
    }
    if latent.memory_ratio is not None:
        goals["inspection_peak_memory"] = _goal(latent.memory_ratio, 1.2, "x plain peak", False)
    notes = [
        f"VLM stages run on {vlm_id}"
        + (" (random weights: its answers are random)" if vlm_id == TINY_VLM else ""),
        "latent_loop_speedup and inspection_vs_plain come from riad_agent.bench.latent "
        f"({latent.clock}, a {latent.model_parameters:,}-parameter tiny model, "
        f"{latent.prompt_tokens}-token prompt)",
        "stages are the inspection graph's nodes (image_load: load_inputs, the query and its "
        f"{config.references} references; retrieval: retrieve_knowledge; expert: expert_analysis; "
        "formatting: explain); prefix_forward, latent_loop and decode are latent_reasoning's reasoner timings",
        "triage: the in-process reasoner runs one inspection at a time (one model); "
        "workers overlap image loading, retrieval, expert and formatting",
        *latent.notes,
    ]
    if config.reduced:
        notes.append("reduced run: 4 images, T=2, small latent model; figures are smoke values only")
    return BenchResult(
        vlm=vlm_id,
        embedder=embedder,
        expert=expert_id,
        config=config,
        stages=stages,
        total_median_ms=sum(t.median_ms for t in stages.values()),
        default_inspection_ms=default_inspection,
        memory=memory,
        triage=triage,
        goals=goals,
        latent=latent,
        seconds=time.perf_counter() - started,
        notes=notes,
    )
