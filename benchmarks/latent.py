"""Latent-loop cost benchmark (prefix-cached vs naive loop, whole inspection, peak memory).

Usage: ``python benchmarks/latent.py [--steps 10] [--perturbations 8] [--out results.json]``
(the same as ``riad bench latent``). Prints one JSON object.
"""

from __future__ import annotations

import typer

from riad_agent.commands.bench_latent import bench_latent

if __name__ == "__main__":
    typer.run(bench_latent)
