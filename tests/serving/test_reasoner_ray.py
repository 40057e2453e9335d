"""Ray Serve scale-out: two CPU replicas of the tiny model on a local loopback Ray instance."""

from __future__ import annotations

import collections
import concurrent.futures
import time

import httpx
import pytest
from serving_inputs import build_input

from riad_agent.serving.client import HttpReasoner
from riad_agent.serving.service import ServiceConfig, free_port
from riad_agent.serving.wire import REPLICA_HEADER, encode_input

pytestmark = pytest.mark.slow


def test_two_replicas_share_the_load() -> None:
    pytest.importorskip("ray.serve")
    from riad_agent.serving.ray_app import RayOptions, start_ray, stop_ray

    url = start_ray(
        "tiny",
        ServiceConfig(port=free_port(), timeout_s=60, token="ray-token"),
        RayOptions(
            replicas=2,
            gpus_per_replica=0,
            cpus_per_replica=1,
            device="cpu",
            torch_threads=1,
            address="local",
            num_cpus=2,
        ),
    )
    try:
        deadline = time.monotonic() + 120
        while httpx.get(f"{url}/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "no replica became ready"
            time.sleep(0.2)
        body = encode_input(build_input(steps=1)).model_dump(mode="json")
        # auth holds on Ray too
        assert httpx.post(f"{url}/v1/reason", json=body, timeout=30).status_code == 401

        def one(seed: int) -> tuple[int, str, str | None]:
            client = HttpReasoner(url, token="ray-token", timeout_s=60)
            result = client.reason(build_input(seed=seed, steps=1))
            return seed, client.last_replica, result.answer

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(one, range(12)))
        assert sorted(seed for seed, _, _ in answers) == list(range(12))  # every request answered once
        assert all(answer in ("A", "B") for _, _, answer in answers)
        spread = collections.Counter(replica for _, replica, _ in answers)
        assert len(spread) == 2 and min(spread.values()) >= 2, spread
        raw = httpx.post(
            f"{url}/v1/reason", json=body, headers={"Authorization": "Bearer ray-token"}, timeout=30
        )
        assert raw.headers[REPLICA_HEADER] in spread and raw.json()["replica"] == raw.headers[REPLICA_HEADER]
    finally:
        stop_ray()
