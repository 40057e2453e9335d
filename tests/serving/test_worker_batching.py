"""``ModelWorker`` with ``max_batch``: waiting requests run together; failures and cancels stay per job."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from serving_inputs import build_input, wait_until
from support.fakes import FakeReasoner

from riad_agent.errors import InvalidImageError, QueueFullError, ReasoningCancelledError
from riad_agent.protocols import ProgressCallback, ReasoningInput, ReasoningResult
from riad_agent.serving.worker import BatchReasoner, ModelWorker


class FakeBatchReasoner(FakeReasoner):
    """Records its batches; the first call waits for ``gate``; seed 13 is a bad image."""

    def __init__(self) -> None:
        super().__init__(delay_s=0.0)
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.on_batch: list[Callable[[], None]] = []  # run at the start of the next batches

    def reason(self, request: ReasoningInput, progress: ProgressCallback | None = None) -> ReasoningResult:
        first = not self.calls
        result = super().reason(request, progress)
        if first:
            self.gate.wait(10)
        return result

    def reason_batch(
        self, requests: list[ReasoningInput], progress: list[ProgressCallback | None] | None = None
    ) -> list[ReasoningResult | Exception]:
        self.batches.append([r.seed for r in requests])
        if self.on_batch:
            self.on_batch.pop(0)()
        outcomes: list[ReasoningResult | Exception] = []
        for request, callback in zip(requests, progress or [None] * len(requests), strict=True):
            try:
                if request.seed == 13:
                    raise InvalidImageError("query image cannot be read")
                outcomes.append(self.reason(request, callback))
            except Exception as exc:  # as LatentReasoner.reason_batch: one outcome per request
                outcomes.append(exc)
        return outcomes


def test_waiting_jobs_run_together_and_fail_or_cancel_alone() -> None:
    fake = FakeBatchReasoner()
    assert isinstance(fake, BatchReasoner)
    worker = ModelWorker(fake, max_queue=6, max_batch=4)
    worker.start()
    first = worker.submit(build_input(seed=0, steps=1))
    wait_until(lambda: len(fake.calls) == 1)  # running alone, held at the gate
    jobs = [worker.submit(build_input(seed=s, steps=3)) for s in (1, 13, 2, 3, 4, 5)]
    with pytest.raises(QueueFullError):
        worker.submit(build_input(seed=6))
    jobs[0].cancel()  # still queued: skipped, never reaches the model
    fake.gate.set()
    assert first.future.result(10).answer == "A"
    with pytest.raises(InvalidImageError):
        jobs[1].future.result(10)
    assert [j.future.result(10).answer for j in jobs[2:]] == ["A"] * 4
    assert fake.batches == [[13, 2, 3, 4]]  # then 5 alone
    assert [c.seed for c in fake.calls] == [0, 2, 3, 4, 5]
    with pytest.raises(ReasoningCancelledError):
        jobs[0].future.result(1)
    assert worker.completed == 6
    worker.close()


def test_a_running_job_cancelled_stops_alone() -> None:
    fake = FakeBatchReasoner()
    worker = ModelWorker(fake, max_queue=4, max_batch=4)
    worker.start()
    first = worker.submit(build_input(seed=0, steps=1))
    wait_until(lambda: len(fake.calls) == 1)
    kept, dropped = worker.submit(build_input(seed=1, steps=3)), worker.submit(build_input(seed=2, steps=3))
    fake.on_batch.append(dropped.cancel)  # the caller gives up once its batch has started
    fake.gate.set()
    first.future.result(10)
    assert kept.future.result(10).answer == "A"
    with pytest.raises(ReasoningCancelledError):
        dropped.future.result(10)
    worker.close()


def test_max_batch_one_runs_one_at_a_time() -> None:
    fake = FakeBatchReasoner()
    worker = ModelWorker(fake, max_queue=4, max_batch=1)
    worker.start()
    first = worker.submit(build_input(seed=0, steps=1))
    wait_until(lambda: len(fake.calls) == 1)
    jobs = [worker.submit(build_input(seed=s, steps=1)) for s in (1, 2, 3)]
    fake.gate.set()
    assert [j.future.result(10).answer for j in [first, *jobs]] == ["A"] * 4
    assert fake.batches == [] and [c.seed for c in fake.calls] == [0, 1, 2, 3]
    worker.close()


def test_tiny_model_batches_answer_as_alone() -> None:
    from riad_agent.serving.service import tiny_reasoner

    reasoner = tiny_reasoner()()
    requests = [build_input(seed=s, steps=2) for s in range(5)]
    alone = [reasoner.reason(r) for r in requests]
    worker = ModelWorker(reasoner, max_queue=8, max_batch=4)
    worker.start()
    jobs = [worker.submit(r) for r in requests]
    results = [job.future.result(60) for job in jobs]
    worker.close()
    for a, g in zip(alone, results, strict=True):
        assert g.answer == a.answer and g.text == a.text
        assert abs(g.trace.final_reward - a.trace.final_reward) < 1e-4
        assert [p.index for p in g.trace.kept] == [p.index for p in a.trace.kept]
    assert max(r.timings_ms.get("batch_size", 1.0) for r in results) > 1  # the queued ones ran together
