"""The inspection graph switches to the remote reasoner by settings alone and degrades when it fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner, part_image

from riad_agent.components import build_components
from riad_agent.inspector import Inspector
from riad_agent.serving.client import HttpReasoner
from riad_agent.serving.service import BackgroundServer, ServiceConfig, create_app
from riad_agent.settings import Settings


@pytest.fixture
def request_dict(tmp_path: Path) -> dict[str, object]:
    paths = []
    for name, defect, seed in (("bad", True, 2), ("ref0", False, 3), ("ref1", False, 4)):
        path = tmp_path / f"{name}.png"
        part_image(defect, seed=seed).save(path)
        paths.append(str(path))
    return {
        "image": paths[0],
        "category": "washer",
        "references": paths[1:],
        "question": {"text": "Is there a defect?", "options": {"A": "Yes.", "B": "No."}},
        "options": {"latent_steps": 3},
    }


def _inspector(tmp_path: Path, url: str, timeout_s: float = 10.0) -> Inspector:
    settings = Settings(data_dir=tmp_path / "data", reasoner_url=url, reasoner_timeout_s=timeout_s)
    components = build_components(settings, knowledge=FakeKnowledge(), expert=FakeExpert())
    return Inspector(components=components)


async def test_remote_reasoner_then_service_dies(tmp_path: Path, request_dict: dict[str, object]) -> None:
    fake = FakeReasoner(answer="A")
    server = BackgroundServer(create_app(fake, ServiceConfig())).start()
    inspector = _inspector(tmp_path, server.url)
    try:
        report = await inspector.ainspect(request_dict)
    finally:
        server.stop()
    assert isinstance(inspector.components.reasoner.get(), HttpReasoner)
    assert report.degraded == [] and report.answer == "A"
    assert report.trace is not None and report.trace.model_id == "fake-reasoner"
    assert len(report.trace.iterations) == 3 and report.models["reasoner"] == "fake-reasoner"
    call = fake.calls[0]  # what travelled over the wire
    assert call.latent_steps == 3 and len(call.templates) == 1 and call.category == "synthetic/washer"
    assert call.patch_prior is not None and call.patch_prior.shape == (64, 64)
    assert call.image_score == pytest.approx(report.anomaly_score, abs=1e-9)  # the expert's score travels too
    assert call.settled_score == pytest.approx(report.anomaly_score, abs=1e-9)  # and settles the answer there
    assert [hit.id for hit in call.knowledge][:1] == ["synthetic/washer/normal"]

    after = await inspector.ainspect(request_dict)  # the service is gone now
    assert after.degraded == ["reasoner_unavailable"] and after.trace is None
    assert after.verdict == report.verdict and after.anomaly_score == report.anomaly_score  # expert-only


async def test_slow_service_degrades_to_reasoner_timeout(
    tmp_path: Path, request_dict: dict[str, object]
) -> None:
    with BackgroundServer(create_app(FakeReasoner(delay_s=3.0), ServiceConfig(timeout_s=30))) as server:
        report = await _inspector(tmp_path, server.url, timeout_s=0.5).ainspect(request_dict)
    assert report.degraded == ["reasoner_timeout"] and report.trace is None
    assert report.verdict == "anomalous"  # the expert's verdict stands


async def test_service_answering_504_degrades_to_reasoner_timeout(
    tmp_path: Path, request_dict: dict[str, object]
) -> None:
    with BackgroundServer(create_app(FakeReasoner(delay_s=2.0), ServiceConfig(timeout_s=0.2))) as server:
        report = await _inspector(tmp_path, server.url, timeout_s=10).ainspect(request_dict)
    assert report.degraded == ["reasoner_timeout"]
