"""Run a triage job on Ray Data (a local cluster of 2 CPUs) on the fake components with a slow expert.

usage: fake_ray_triage.py IMAGES_DIR OUT.jsonl REFERENCE.png DELAY_S
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

import ray  # noqa: E402

from riad_agent.graphs.triage import TriageJob  # noqa: E402
from riad_agent.graphs.triage_ray import run_ray_triage  # noqa: E402
from support.ray_fakes import slow_fake_components  # noqa: E402

if __name__ == "__main__":
    images, out, reference, delay = (
        Path(sys.argv[1]),
        Path(sys.argv[2]),
        Path(sys.argv[3]),
        float(sys.argv[4]),
    )
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    factory = functools.partial(slow_fake_components, str(out.parent / "data"), delay)
    job = TriageJob(images=images, out=out, references=[reference], reasoner="never", concurrency=2)
    summary = run_ray_triage(job, "auto", factory=factory)
    print(summary.model_dump_json())
