"""Cost of the latent loop, side by side on one model: prefix-cached loop vs the naive loop.

* loop cost: our loop (prefix run once, every iteration a packed batch of short suffix rows) vs the
  naive loop of DMLR's public code (two full forwards per iteration over the whole prompt, vision
  tower included), both at the same T;
* whole inspection (prepare + prefix + loop + decode) in units of one plain forward + decode;
* times are the fastest of several round-robin rounds, in process CPU time on CPU (other jobs on a
  shared machine then barely move the figures; with 1 torch thread it equals the compute spent)
  and in wall time on CUDA;
* peak memory of a whole inspection vs a plain forward + decode (CUDA: ``max_memory_allocated``;
  CPU: peak RSS, reset through ``/proc/self/clear_refs`` in a fresh process per measurement).

Random tiny models answer at random, so only costs are measured here, never accuracy.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, Field

from riad_agent.models.qwen_vl import QwenVLAdapter
from riad_agent.models.tiny import QwenVariant, TinySizes, build_tiny_qwen2_vl
from riad_agent.protocols import ReasoningInput
from riad_agent.reasoning.config import LatentConfig
from riad_agent.reasoning.latent_loop import build_row, run_latent_loop
from riad_agent.reasoning.prompt import build_segments
from riad_agent.reasoning.reasoner import LatentReasoner
from riad_agent.schemas import KnowledgeHit, MultipleChoiceQuestion

BenchProgress = Callable[[str], None]


class LatentBenchConfig(BaseModel):
    """What to measure on; the defaults run in a few minutes on 2 CPU cores."""

    variant: QwenVariant = "qwen2_vl"
    hidden: int = 512
    layers: int = 8
    heads: int = 8
    kv_heads: int = 4
    intermediate: int = 1408
    vision_embed: int = 128
    vision_depth: int = 2
    image_size: int = Field(default=448, description="Side of the two square images (14 px patches).")
    knowledge_hits: int = Field(
        default=3, description="Knowledge entries (600 chars each) to reach >= 1,000 tokens."
    )
    steps: int = 10
    perturbations: int = 8
    latent_tokens: int = 4
    patches: int = 4
    rationale_tokens: int = 8
    repeats: int = 5
    seed: int = 0
    device: str = "cpu"
    threads: int = Field(default=1, description="torch threads (1 is fastest on a busy shared CPU).")
    measure_memory: bool = True


class LatentBenchResult(BaseModel):
    """Measured figures (milliseconds, bytes) and whether each goal is met."""

    config: LatentBenchConfig
    clock: str = Field(
        description="'process CPU time' on CPU, 'wall time' on CUDA; the fastest of the rounds."
    )
    model_parameters: int
    prompt_tokens: int
    image_tokens: int
    suffix_tokens_per_iteration: int
    plain_ms: float
    cached_loop_ms: float
    naive_loop_ms: float
    loop_speedup: float
    inspection_ms: float
    inspection_over_plain: float
    memory_method: str | None = None
    plain_peak_bytes: int | None = None
    inspection_peak_bytes: int | None = None
    baseline_bytes: int | None = None
    memory_ratio: float | None = None
    memory_delta_ratio: float | None = None
    goals: dict[str, bool] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


def _sizes(cfg: LatentBenchConfig) -> TinySizes:
    return TinySizes(
        hidden=cfg.hidden,
        layers=cfg.layers,
        heads=cfg.heads,
        kv_heads=cfg.kv_heads,
        intermediate=cfg.intermediate,
        vision_embed=cfg.vision_embed,
        vision_depth=cfg.vision_depth,
        vision_heads=2,
        patch=14,
    )


def build_bench_model(cfg: LatentBenchConfig) -> QwenVLAdapter:
    return build_tiny_qwen2_vl(
        cfg.variant,
        seed=cfg.seed,
        sizes=_sizes(cfg),
        processor_max_pixels=cfg.image_size * cfg.image_size,
        device=cfg.device,
    )


def build_bench_request(cfg: LatentBenchConfig) -> ReasoningInput:
    rng = np.random.default_rng(cfg.seed)
    size = (cfg.image_size, cfg.image_size, 3)
    query = Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8))
    template = Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8))
    words = [
        "normal",
        "surface",
        "smooth",
        "crack",
        "scratch",
        "contamination",
        "rim",
        "edge",
        "colour",
        "spot",
        "hole",
        "bent",
    ]
    hits = [
        KnowledgeHit(
            id=f"bench/knowledge-{k}",
            score=1.0,
            dataset="bench",
            category="widget",
            kind="normal",
            title=f"Widget note {k}",
            text=" ".join(words[(i + k) % len(words)] for i in range(100)),
        )
        for k in range(cfg.knowledge_hits)
    ]
    prior = rng.random((32, 32)).astype(np.float32)
    return ReasoningInput(
        image=query,
        question=MultipleChoiceQuestion(
            text="Is there any defect in the object?", options={"A": "Yes.", "B": "No."}
        ),
        knowledge=hits,
        templates=[template],
        patch_prior=prior,
        latent_steps=cfg.steps,
        latent_tokens=cfg.latent_tokens,
        seed=cfg.seed,
    )


def latent_config(cfg: LatentBenchConfig) -> LatentConfig:
    return LatentConfig(
        perturbations=cfg.perturbations,
        patches=cfg.patches,
        reward_threshold=1.0,  # never stop early: measure all T iterations
        plateau_patience=0,
        rationale_tokens=cfg.rationale_tokens,
    )


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain_inspection(
    vlm: QwenVLAdapter, reasoner: LatentReasoner, request: ReasoningInput, tokens: int
) -> None:
    """The baseline: the same prompt, one forward (vision included) and a greedy decode, no latents."""
    prompt = vlm.prepare(build_segments(request, reasoner.config.instruction))
    prefix = vlm.prefix_forward(prompt)
    vlm.generate(prefix, vlm.answer_start(), tokens)


def naive_loop(vlm: QwenVLAdapter, reasoner: LatentReasoner, request: ReasoningInput, steps: int) -> None:
    """DMLR-style loop without a prefix cache: two full forwards (vision included) per iteration."""
    setup, _ = reasoner.setup(request)
    setup.layout = "after"  # latents at positions 0..n-1, the patches after them
    n = setup.latents.shape[0]
    latents = setup.latents
    patches = list(range(reasoner.config.patches))
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        row = build_row(setup, latents, patches)
        positions = [*list(range(n)), int(row.shape[0]) - 1]
        vlm.full_forward(setup.prefix.prompt, row, positions, recompute_vision=True)
        latents = latents + 0.01 * torch.randn(latents.shape, generator=generator).to(latents)
        row = build_row(setup, latents, patches)
        vlm.full_forward(setup.prefix.prompt, row, positions, recompute_vision=True)


def _clock(device: str) -> Callable[[], float]:
    """CPU time of this process on CPU (robust to other load on a shared machine), else wall time."""
    return time.perf_counter if device.startswith("cuda") else time.process_time


def _timed_rounds(runs: dict[str, Callable[[], object]], device: str, repeats: int) -> dict[str, float]:
    """Fastest milliseconds of each run (the least disturbed by other load), measured round-robin
    so that load changes hit all runs alike."""
    clock = _clock(device)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            _sync(device)
            started = clock()
            fn()
            _sync(device)
            times[name].append((clock() - started) * 1000.0)
    return {name: min(values) for name, values in times.items()}


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def peak_rss_child(cfg: LatentBenchConfig, which: str) -> tuple[int, int]:
    """In a fresh process: (RSS before, peak RSS during) one plain run or one whole inspection."""
    torch.set_num_threads(cfg.threads)
    vlm = build_bench_model(cfg)
    reasoner = LatentReasoner(vlm, latent_config(cfg))
    request = build_bench_request(cfg)
    plain_inspection(vlm, reasoner, request, cfg.rationale_tokens)  # warm-up: allocator and lazy init
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # resets VmHWM to the current RSS
    baseline = _status_bytes("VmRSS")
    if which == "plain":
        plain_inspection(vlm, reasoner, request, cfg.rationale_tokens)
    else:
        reasoner.reason(request)
    return baseline, _status_bytes("VmHWM")


def memory_child(which: str) -> None:
    """The fresh process of :func:`_peak_rss`: reads the config on stdin, prints ``[baseline, peak]``."""
    config = LatentBenchConfig.model_validate_json(sys.stdin.read())
    print(json.dumps(peak_rss_child(config, which)))


_MEMORY_CHILD = "import sys; from riad_agent.bench.latent import memory_child; memory_child(sys.argv[1])"


def _peak_rss(cfg: LatentBenchConfig, which: str) -> tuple[int, int]:
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, which],
        input=cfg.model_dump_json(),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement failed: {done.stderr[-2000:]}")
    baseline, peak = json.loads(done.stdout.strip().splitlines()[-1])
    return int(baseline), int(peak)


def run_latent_benchmark(cfg: LatentBenchConfig, progress: BenchProgress | None = None) -> LatentBenchResult:
    """Measure everything side by side and say which goals are met."""
    say = progress or (lambda _: None)
    torch.set_num_threads(cfg.threads)
    say("building the model")
    vlm = build_bench_model(cfg)
    reasoner = LatentReasoner(vlm, latent_config(cfg))
    request = build_bench_request(cfg)
    setup, _ = reasoner.setup(request)
    prompt = setup.prefix.prompt
    rows_per_iteration = cfg.perturbations + 2
    row_tokens = cfg.latent_tokens + cfg.patches + int(setup.answer_start.shape[0])

    say("warm-up")
    plain_inspection(vlm, reasoner, request, cfg.rationale_tokens)
    run_latent_loop(vlm, dataclasses.replace(setup, steps=1), reasoner.config)
    say(f"plain forward+decode, cached loop, whole inspection (best of {cfg.repeats} rounds)")
    timed = _timed_rounds(
        {
            "plain": lambda: plain_inspection(vlm, reasoner, request, cfg.rationale_tokens),
            "cached": lambda: run_latent_loop(vlm, setup, reasoner.config),
            "inspection": lambda: reasoner.reason(request),
        },
        cfg.device,
        cfg.repeats,
    )
    plain_ms, cached_ms, inspection_ms = timed["plain"], timed["cached"], timed["inspection"]
    say("naive latent loop (two full forwards per iteration)")
    naive_ms = _timed_rounds({"naive": lambda: naive_loop(vlm, reasoner, request, cfg.steps)}, cfg.device, 1)[
        "naive"
    ]

    result = LatentBenchResult(
        config=cfg,
        clock="wall time" if cfg.device.startswith("cuda") else "process CPU time",
        model_parameters=sum(p.numel() for p in vlm.model.parameters()),
        prompt_tokens=prompt.length,
        image_tokens=sum(span.length for span in prompt.spans),
        suffix_tokens_per_iteration=rows_per_iteration * row_tokens,
        plain_ms=plain_ms,
        cached_loop_ms=cached_ms,
        naive_loop_ms=naive_ms,
        loop_speedup=naive_ms / cached_ms,
        inspection_ms=inspection_ms,
        inspection_over_plain=inspection_ms / plain_ms,
    )
    if cfg.measure_memory:
        say("peak memory")
        _measure_memory(cfg, result, vlm, reasoner, request)
    _judge(result)
    return result


def _measure_memory(
    cfg: LatentBenchConfig,
    result: LatentBenchResult,
    vlm: QwenVLAdapter,
    reasoner: LatentReasoner,
    request: ReasoningInput,
) -> None:
    if cfg.device.startswith("cuda"):
        torch.cuda.synchronize()
        baseline = torch.cuda.memory_allocated()
        peaks = []
        for run in (
            lambda: plain_inspection(vlm, reasoner, request, cfg.rationale_tokens),
            lambda: reasoner.reason(request),
        ):
            torch.cuda.reset_peak_memory_stats()
            run()
            torch.cuda.synchronize()
            peaks.append(torch.cuda.max_memory_allocated())
        result.memory_method = "torch.cuda.max_memory_allocated"
    else:
        plain_base, plain_peak = _peak_rss(cfg, "plain")
        loop_base, loop_peak = _peak_rss(cfg, "inspection")
        baseline = min(plain_base, loop_base)
        peaks = [plain_peak, loop_peak]
        result.memory_method = "peak RSS (VmHWM after clear_refs), fresh process each"
    result.baseline_bytes = int(baseline)
    result.plain_peak_bytes, result.inspection_peak_bytes = int(peaks[0]), int(peaks[1])
    result.memory_ratio = peaks[1] / peaks[0]
    plain_delta = max(peaks[0] - baseline, 1)
    result.memory_delta_ratio = (peaks[1] - baseline) / plain_delta


def _judge(result: LatentBenchResult) -> None:
    result.goals["loop_speedup>=10x"] = result.loop_speedup >= 10.0
    result.goals["inspection<=2x_plain"] = result.inspection_over_plain <= 2.0
    if result.memory_ratio is not None:
        result.goals["peak_memory<=1.2x_plain"] = result.memory_ratio <= 1.2
    cfg = result.config
    if not result.goals["loop_speedup>=10x"]:
        result.notes.append(
            f"loop speed-up {result.loop_speedup:.1f}x is {10 / result.loop_speedup:.2f}x short of 10x"
        )
    if not result.goals["inspection<=2x_plain"]:
        loop_tokens = result.suffix_tokens_per_iteration * cfg.steps
        result.notes.append(
            f"inspection costs {result.inspection_over_plain:.2f}x a plain forward+decode "
            f"(goal 2x): T={cfg.steps} iterations of {cfg.perturbations + 2} rows evaluate {loop_tokens} "
            f"suffix tokens against a {result.prompt_tokens}-token prompt; compute-bound on CPU, the "
            "loop costs about as many token-forwards as the prompt itself"
        )
    if result.memory_ratio is not None and not result.goals["peak_memory<=1.2x_plain"]:
        result.notes.append(f"peak memory {result.memory_ratio:.2f}x the plain run (goal 1.2x)")
