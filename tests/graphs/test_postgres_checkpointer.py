"""The Postgres checkpointer: a throwaway cluster on loopback, a review interrupted in one graph
instance and resumed from another (as after a restart), the heatmap read back from the blob store.

Runs where PostgreSQL's server binaries (initdb, pg_ctl) and a ``postgres`` system user exist, as on
this project's machines; skipped elsewhere with the reason.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from langgraph.types import Command
from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner

from riad_agent.components import Components, build_components
from riad_agent.graphs.checkpoints import open_async_checkpointer
from riad_agent.graphs.inspection import build_inspection_graph
from riad_agent.schemas import InspectionRequest
from riad_agent.serving.service import free_port
from riad_agent.settings import Settings


def _as_postgres(*command: str) -> list[str]:
    return list(command) if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *command]


@pytest.fixture(scope="module")
def postgres_dsn() -> Iterator[str]:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
    root = Path(tempfile.mkdtemp(prefix="riad-pg-"))
    if os.geteuid() == 0:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data = root / "data"
    port = free_port()
    subprocess.run(
        _as_postgres(initdb, "-D", str(data), "-A", "trust", "-U", "riad"), check=True, capture_output=True
    )
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}"
    subprocess.run(
        _as_postgres(pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"),
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        yield f"postgresql://riad@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres(pg_ctl, "-D", str(data), "-m", "fast", "stop"), capture_output=True, timeout=60
        )
        shutil.rmtree(root, ignore_errors=True)


async def test_review_survives_a_new_graph_instance(
    postgres_dsn: str, tmp_path: Path, images: dict[str, Path]
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", checkpointer="postgres", checkpoint_dsn=postgres_dsn, review_threshold=0.5
    )
    config = {"configurable": {"thread_id": f"review-{time.time_ns()}"}}
    request = InspectionRequest(
        image=str(images["bad"]), references=[str(images["ref0"])], options={"return_heatmap": True}
    )

    def components() -> Components:
        return build_components(
            settings, knowledge=FakeKnowledge(), expert=FakeExpert(), reasoner=FakeReasoner()
        )

    async with open_async_checkpointer(settings) as saver:
        await saver.setup()
        first = build_inspection_graph(components=components(), checkpointer=saver)
        state = await first.ainvoke({"request": request}, config=config)
        assert "__interrupt__" in state and "report" not in state

    async with open_async_checkpointer(settings) as saver:  # a new connection and a new graph
        second = build_inspection_graph(components=components(), checkpointer=saver)
        state = await second.ainvoke(
            Command(resume={"verdict": "anomalous", "note": "confirmed"}), config=config
        )
        assert state["report"].verdict == "anomalous"
        assert "Note: confirmed" in state["report"].explanation
        assert state["report"].heatmap_png == b"\x89PNGfake"  # stored as a blob key, read back
