"""``open_knowledge_base``: the store the settings describe, filled with the packaged base when needed."""

from __future__ import annotations

import logging

from riad_agent.errors import KnowledgeStoreLockedError
from riad_agent.knowledge.backend import connect
from riad_agent.knowledge.collection import KnowledgeCollection
from riad_agent.knowledge.embed import make_embedder
from riad_agent.knowledge.loaders import default_base_path, load_riad, tree_fingerprint
from riad_agent.knowledge.store import QdrantKnowledgeBase
from riad_agent.knowledge.writer import ProgressFn
from riad_agent.protocols import TextEmbedder
from riad_agent.settings import Settings

PACKAGED_SCOPE = "package:base"
log = logging.getLogger(__name__)


def _needs_packaged(collection: KnowledgeCollection, fingerprint: str) -> bool:
    meta = collection.meta()
    if meta is None:
        return True
    stored = meta.fingerprints.get(PACKAGED_SCOPE)
    return not (stored == fingerprint or (stored is None and collection.catalogue().names))


def ensure_packaged_base(kb: QdrantKnowledgeBase, progress: ProgressFn | None = None) -> bool:
    """Ingest the packaged base into an empty collection, or update it when an older version is there.

    A collection that holds only the user's own knowledge is left alone. True when it ingested.
    The check runs again under the writer lock, so processes starting together ingest it once.
    """
    base = default_base_path()
    if not base.is_dir() or not any(base.rglob("*.yaml")):
        return False
    fingerprint = tree_fingerprint(base)
    if not _needs_packaged(kb.storage, fingerprint):
        return False
    with kb.writing() as writer:
        if not _needs_packaged(writer.collection, fingerprint):
            return False  # another process did it while this one waited
        writer.ingest(load_riad(base), scope=PACKAGED_SCOPE, fingerprint=fingerprint, progress=progress)
    return True


def open_knowledge_base(
    settings: Settings,
    embedder: TextEmbedder | None = None,
    ingest_packaged: bool = True,
    progress: ProgressFn | None = None,
) -> QdrantKnowledgeBase:
    """Connect (the embedded store or a server) and make sure the packaged base is in it.

    When another process holds the embedded store's writer lock past the timeout and the base
    already holds knowledge (an older packaged version), it is used as it is, with a warning.
    """
    source = connect(settings)
    kb = QdrantKnowledgeBase(
        source,
        embedder or make_embedder(settings.embedder, settings.model_cache_dir),
        collection=settings.collection,
    )
    if ingest_packaged:
        try:
            ensure_packaged_base(kb, progress)
        except KnowledgeStoreLockedError as exc:
            if not kb.categories():
                kb.close()
                raise
            log.warning("the packaged knowledge was not updated: %s", exc.one_line())
        except BaseException:
            kb.close()
            raise
    return kb
