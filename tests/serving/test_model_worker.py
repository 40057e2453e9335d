"""``ModelWorker``: one model thread, bounded queue, cancellation of waiting and running jobs."""

from __future__ import annotations

import pytest
from serving_inputs import build_input, wait_until
from support.fakes import FakeReasoner

from riad_agent.errors import NotReadyError, QueueFullError, ReasoningCancelledError
from riad_agent.serving.worker import ModelWorker


def test_jobs_run_one_at_a_time_in_order() -> None:
    fake = FakeReasoner(delay_s=0.05)
    worker = ModelWorker(fake, max_queue=4)
    worker.start()
    jobs = [worker.submit(build_input(seed=i, steps=1)) for i in range(4)]
    results = [job.future.result(10) for job in jobs]
    assert [call.seed for call in fake.calls] == [0, 1, 2, 3]
    assert all(result.answer == "A" for result in results) and worker.completed == 4
    worker.close()


def test_full_queue_refuses_and_cancelled_jobs_are_skipped_or_stopped() -> None:
    slow = FakeReasoner(delay_s=0.3)
    worker = ModelWorker(slow, max_queue=2)
    worker.start()
    running = worker.submit(build_input(seed=0, steps=50))
    wait_until(lambda: len(slow.calls) == 1)
    waiting = worker.submit(build_input(seed=1, steps=1))
    kept = worker.submit(build_input(seed=2, steps=1))
    with pytest.raises(QueueFullError, match="2 waiting"):
        worker.submit(build_input(seed=3, steps=1))
    assert worker.retry_after_s() >= 1
    waiting.cancel()  # never reaches the model
    running.cancel()  # running: stopped at its next progress callback
    assert kept.future.result(10).answer == "A"
    with pytest.raises(ReasoningCancelledError):
        running.future.result(10)
    assert [call.seed for call in slow.calls] == [0, 2]
    worker.close()


def test_close_fails_waiting_jobs_stops_the_running_one_and_not_ready_before_start() -> None:
    worker = ModelWorker(lambda: FakeReasoner(delay_s=0.5), max_queue=3)
    with pytest.raises(NotReadyError, match="loading"):
        worker.submit(build_input())
    worker.start()
    assert worker.wait_ready(10) and worker.model_id == "fake-reasoner"
    first = worker.submit(build_input(seed=0, steps=1))
    wait_until(lambda: worker.running == 1)
    second = worker.submit(build_input(seed=1, steps=1))
    thread = worker._thread
    worker.close()
    assert thread is not None and not thread.is_alive()  # no model work outlives the shutdown
    with pytest.raises(ReasoningCancelledError, match="shutting down"):
        first.future.result(1)
    with pytest.raises(NotReadyError, match="shutting down"):
        second.future.result(1)
    with pytest.raises(NotReadyError, match="shutting down"):
        worker.submit(build_input())
    assert worker.cancelled == 1 and worker.completed == 0
