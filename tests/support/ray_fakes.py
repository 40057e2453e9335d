"""Components on the fakes, importable by Ray workers (the Ray tests put this folder on their path)."""

from __future__ import annotations

from pathlib import Path

from riad_agent.components import Components, build_components
from riad_agent.settings import Settings
from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner


def fake_components(data_dir: str) -> Components:
    """The fake expert, knowledge and reasoner with a data dir of their own."""
    return build_components(
        Settings(data_dir=Path(data_dir)),
        knowledge=FakeKnowledge(),
        expert=FakeExpert(),
        reasoner=FakeReasoner(),
    )


def slow_fake_components(data_dir: str, delay_s: float) -> Components:
    """:func:`fake_components` with an expert that takes ``delay_s`` per image (kill-and-resume tests)."""
    from support.fake_triage import SlowExpert

    return build_components(
        Settings(data_dir=Path(data_dir)),
        knowledge=FakeKnowledge(),
        expert=SlowExpert(delay_s),
        reasoner=FakeReasoner(),
    )
