"""Fixtures of the reasoner-service tests: services on free loopback ports."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from riad_agent.protocols import Reasoner
from riad_agent.serving.service import BackgroundServer, ServiceConfig, create_app

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for ``serving_inputs``

ServeFn = Callable[..., BackgroundServer]


@pytest.fixture
def serve() -> Iterator[ServeFn]:
    """``serve(reasoner, **config)`` starts a service on a free loopback port; all are stopped after."""
    servers: list[BackgroundServer] = []

    def start(reasoner: Reasoner | Callable[[], Reasoner], **config: object) -> BackgroundServer:
        server = BackgroundServer(create_app(reasoner, ServiceConfig(**config)))  # type: ignore[arg-type]
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()
