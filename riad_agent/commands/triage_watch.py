"""``riad triage --watch``: the live folder until SIGINT or SIGTERM, then a clean exit (code 0)."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from riad_agent.components import Components
from riad_agent.graphs.triage import TriageJob, TriageSummary


def watch_until_signal(job: TriageJob, components: Components) -> TriageSummary:
    """Run the watcher until SIGINT or SIGTERM; in-flight images are recorded, the lock released."""
    from riad_agent.graphs.triage_watch import run_watch

    async def main() -> TriageSummary:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, stop.set)

        def report(event: dict[str, Any]) -> None:
            print(f"triaged {event['image']}", file=sys.stderr, flush=True)

        print(f"watching {job.images} (results: {job.out}); stop with Ctrl-C", file=sys.stderr, flush=True)
        try:
            return await run_watch(job, components, stop, progress=report)
        finally:
            for number in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(number)

    return asyncio.run(main())
