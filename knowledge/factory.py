"""``open_knowledge_base``: the store the settings describe, filled with the packaged base when needed."""

from __future__ import annotations

from riad_agent.knowledge.backend import connect
from riad_agent.knowledge.embed import make_embedder
from riad_agent.knowledge.loaders import default_base_path, load_riad, tree_fingerprint
from riad_agent.knowledge.store import QdrantKnowledgeBase
from riad_agent.knowledge.writer import ProgressFn
from riad_agent.protocols import TextEmbedder
from riad_agent.settings import Settings

PACKAGED_SCOPE = "package:base"


def ensure_packaged_base(kb: QdrantKnowledgeBase, progress: ProgressFn | None = None) -> bool:
    """Ingest the packaged base into an empty collection, or update it when an older version is there.

    A collection that holds only the user's own knowledge is left alone. True when it ingested.
    """
    base = default_base_path()
    if not base.is_dir() or not any(base.rglob("*.yaml")):
        return False
    fingerprint = tree_fingerprint(base)
    meta = kb.meta()
    if meta is not None:
        stored = meta.fingerprints.get(PACKAGED_SCOPE)
        if stored == fingerprint or (stored is None and kb.categories()):
            return False
    kb.ingest(load_riad(base), scope=PACKAGED_SCOPE, fingerprint=fingerprint, progress=progress)
    return True


def open_knowledge_base(
    settings: Settings,
    embedder: TextEmbedder | None = None,
    ingest_packaged: bool = True,
    progress: ProgressFn | None = None,
) -> QdrantKnowledgeBase:
    """Connect (embedded store or server) and make sure the packaged base is in it."""
    client = connect(settings)
    kb = QdrantKnowledgeBase(
        client, embedder or make_embedder(settings.embedder, settings.model_cache_dir), collection=settings.collection
    )
    if ingest_packaged:
        try:
            ensure_packaged_base(kb, progress)
        except BaseException:
            kb.close()
            raise
    return kb
