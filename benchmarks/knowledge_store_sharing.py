"""What sharing the embedded knowledge store between processes costs, over the packaged base, as JSON.

- ``open_ms``: opening the store and listing its categories, as a new process does (the packaged
  base is checked by its fingerprint and loaded);
- ``check_us``: a read when no one wrote (``LocalStore.current``: one ``stat`` of ``CURRENT``);
- ``refresh_ms``: a reader's first read after another process published a generation (read the
  file, fill its in-memory client);
- ``write_ms``: one write transaction of one changed entry, split into waiting for nothing
  (``lock_ms``), loading the live generation (``load_ms``), and publishing (``publish_ms``:
  dump, write, fsync, rename);
- ``search_p50_ms``: hybrid search with a category filter through the shared store and through a
  plain in-memory client holding the same points (the per-call ``stat`` checks are the difference).

The hashing embedder at 384 dimensions has MiniLM's vector sizes without loading a model. The load
average is recorded: the timings mean little on a busy machine.

    python benchmarks/knowledge_store_sharing.py [--repeats 20] [--out FILE]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _p50(samples: list[float]) -> float:
    return round(statistics.median(samples), 3)


def _timed(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text(encoding="utf-8").strip()
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="Samples per figure.")
    parser.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    args = parser.parse_args(argv)

    from riad_agent.knowledge import local_store, snapshot
    from riad_agent.knowledge.backend import FixedClient
    from riad_agent.knowledge.embed import HashingEmbedder
    from riad_agent.knowledge.factory import open_knowledge_base
    from riad_agent.knowledge.loaders import default_base_path, load_riad
    from riad_agent.knowledge.store import QdrantKnowledgeBase
    from riad_agent.settings import Settings

    result: dict[str, object] = {"loadavg_before": _loadavg()}
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=Path(data_dir), qdrant_url=None, embedder="hashing")
        kb = open_knowledge_base(settings, embedder=HashingEmbedder(dimension=384))
        store = kb.storage.source
        assert isinstance(store, local_store.LocalStore)
        folder = store.path
        result["points"] = sum(1 + len(c.defect_types) for c in kb.list_categories())
        kb.close()  # the last user: the next open loads the store as a new process would
        opens = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            kb = open_knowledge_base(settings, embedder=HashingEmbedder(dimension=384))
            kb.categories()
            opens.append((time.perf_counter() - started) * 1000)
            kb.close()
        result["open_ms"] = _p50(opens)
        kb = open_knowledge_base(settings, embedder=HashingEmbedder(dimension=384))
        store = kb.storage.source
        assert isinstance(store, local_store.LocalStore)
        live = json.loads((folder / local_store.CURRENT).read_text())["file"]
        result["file_kib"] = round((folder / live).stat().st_size / 1024, 1)

        checks = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            for _ in range(1000):
                store.current()
            checks.append((time.perf_counter() - started) * 1000)  # ms per 1000 = us per call
        result["check_us"] = _p50(checks)

        refreshes = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            store._load_live()  # what a reader does once CURRENT changed
            refreshes.append((time.perf_counter() - started) * 1000)
        result["refresh_ms"] = _p50(refreshes)

        entries = load_riad(default_base_path())[:1]
        lock_ms, load_ms, publish_ms, write_ms = [], [], [], []
        for index in range(args.repeats):
            edited = [entries[0].model_copy(update={"likely_cause": f"edit {index}"})]
            started = time.perf_counter()
            with store._writer_lock():
                lock_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            client = snapshot.restore(
                snapshot.read(folder / json.loads((folder / "CURRENT").read_text())["file"])
            )
            load_ms.append((time.perf_counter() - started) * 1000)
            del client
            started = time.perf_counter()
            kb.ingest(edited, scope="package:base-edit")
            write_ms.append((time.perf_counter() - started) * 1000)
        started_dump = time.perf_counter()
        arrays = snapshot.dump(kb.client)
        dump_ms = (time.perf_counter() - started_dump) * 1000
        for _ in range(args.repeats):
            started = time.perf_counter()
            snapshot.write(folder / ".bench.tmp", arrays)
            publish_ms.append(dump_ms + (time.perf_counter() - started) * 1000)
        (folder / ".bench.tmp").unlink()
        result["write_ms"] = {
            "total": _p50(write_ms),
            "lock_ms": _p50(lock_ms),
            "load_ms": _p50(load_ms),
            "publish_ms": _p50(publish_ms),
        }

        categories = kb.categories()
        plain = QdrantKnowledgeBase(
            FixedClient(snapshot.copy(kb.client)), kb.embedder, collection=kb.collection
        )
        searches: dict[str, list[float]] = {"shared_store": [], "plain_client": []}
        for repeat in range(args.repeats):
            category = categories[repeat % len(categories)]
            for name, base in (("shared_store", kb), ("plain_client", plain)):
                search = functools.partial(base.search, "dark crack on the surface", category=category, k=4)
                searches[name].extend(_timed(search, 5))
        result["search_p50_ms"] = {name: _p50(samples) for name, samples in searches.items()}
        kb.close()
    result["loadavg_after"] = _loadavg()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
