"""The latent benchmark on a micro model (figures are not asserted, only their consistency)."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from riad_agent.bench.latent import LatentBenchConfig, LatentBenchResult, run_latent_benchmark
from riad_agent.commands.bench_latent import bench_latent

MICRO = LatentBenchConfig(
    hidden=32,
    layers=2,
    heads=2,
    kv_heads=1,
    intermediate=64,
    vision_embed=16,
    vision_depth=1,
    image_size=56,
    knowledge_hits=1,
    steps=2,
    perturbations=2,
    repeats=1,
)


def test_benchmark_reports_consistent_figures() -> None:
    stages: list[str] = []
    result = run_latent_benchmark(MICRO, progress=stages.append)
    assert isinstance(result, LatentBenchResult) and result.clock == "process CPU time"
    assert result.image_tokens == 2 * (56 // 28) ** 2
    assert result.prompt_tokens > result.image_tokens
    assert result.suffix_tokens_per_iteration == (2 + 2) * (4 + 4 + 5)
    assert result.loop_speedup == result.naive_loop_ms / result.cached_loop_ms
    assert result.inspection_over_plain == result.inspection_ms / result.plain_ms
    assert result.memory_ratio is not None and result.plain_peak_bytes and result.inspection_peak_bytes
    assert result.memory_ratio == result.inspection_peak_bytes / result.plain_peak_bytes
    assert set(result.goals) == {"loop_speedup>=10x", "inspection<=2x_plain", "peak_memory<=1.2x_plain"}
    assert len(result.notes) == sum(not ok for ok in result.goals.values())
    assert stages[0] == "building the model" and stages[-1] == "peak memory"


def test_command_refuses_bad_options_with_one_line() -> None:
    app = typer.Typer()
    app.command()(bench_latent)
    out = CliRunner().invoke(app, ["--variant", "gpt"])
    assert out.exit_code == 2
    assert "InvalidRequestError: unknown variant 'gpt'" in out.output
    assert "Traceback" not in out.output
