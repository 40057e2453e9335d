"""The first use of the MiniLM embedder from several threads at once loads it once and works."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import threading
from riad_agent.knowledge.embed import MiniLMEmbedder
results, errors = [], []
def work():
    try:
        results.append(MiniLMEmbedder().embed(["a crack in the shell"]).shape)
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=work) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print(errors or results)
assert not errors and len(results) == 4
"""


def test_concurrent_first_use_in_a_fresh_process() -> None:
    # a fresh interpreter: transformers must not be imported yet, as in a new server process
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
