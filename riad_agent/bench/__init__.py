"""``riad bench``: the whole pipeline stage by stage, batch triage throughput and every speed goal."""

from riad_agent.bench.runner import BenchConfig, BenchResult, run_bench

__all__ = ["BenchConfig", "BenchResult", "run_bench"]
