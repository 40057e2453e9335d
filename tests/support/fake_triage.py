"""Run a triage job on the fake components (slow expert), for kill-and-resume tests.

usage: fake_triage.py IMAGES_DIR OUT.jsonl REFERENCE.png DELAY_S
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image

from riad_agent.components import build_components
from riad_agent.graphs.triage import TriageJob, build_triage_graph, run_triage
from riad_agent.protocols import AnomalyMap, Pose
from riad_agent.settings import Settings
from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner


class SlowExpert(FakeExpert):
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def analyse(
        self,
        image: Image.Image,
        references: Sequence[Image.Image],
        *,
        pose: Pose | None = None,
        pose_source: str = "knowledge",
    ) -> AnomalyMap:
        time.sleep(self.delay_s)
        return super().analyse(image, references, pose=pose, pose_source=pose_source)


if __name__ == "__main__":
    images, out, reference, delay = (
        Path(sys.argv[1]),
        Path(sys.argv[2]),
        Path(sys.argv[3]),
        float(sys.argv[4]),
    )
    settings = Settings(data_dir=out.parent / "data")
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=SlowExpert(delay), reasoner=FakeReasoner()
    )
    job = TriageJob(
        images=images, out=out, references=[reference], concurrency=2, options={"latent_steps": 1}
    )
    summary = asyncio.run(run_triage(job, build_triage_graph(components=components)))
    print(summary.model_dump_json())
