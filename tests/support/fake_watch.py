"""Watch a folder on the fake components (slow expert) until SIGINT/SIGTERM, as ``riad triage --watch`` does.

usage: fake_watch.py FOLDER OUT.jsonl REFERENCE.png DELAY_S
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from riad_agent.commands.triage_watch import watch_until_signal
from riad_agent.components import build_components
from riad_agent.graphs.triage import TriageJob
from riad_agent.settings import Settings
from support.fake_triage import SlowExpert
from support.fakes import FakeKnowledge, FakeReasoner

if __name__ == "__main__":
    folder, out, reference, delay = (
        Path(sys.argv[1]),
        Path(sys.argv[2]),
        Path(sys.argv[3]),
        float(sys.argv[4]),
    )
    settings = Settings(data_dir=out.parent / "data")
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=SlowExpert(delay), reasoner=FakeReasoner()
    )
    job = TriageJob(images=folder, out=out, references=[reference], concurrency=2, reasoner="never")
    summary = watch_until_signal(job, components)
    print(summary.model_dump_json())
