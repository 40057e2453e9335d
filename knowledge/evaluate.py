"""Retrieval quality: recall@1, recall@3 and MRR per search mode, with the category filter off and on.

The query set (``knowledge/eval/queries.yaml``) is a list of ``{query, category, expected}`` where
``category`` is 'dataset/category' and ``expected`` the id of the entry that answers the query.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from riad_agent.errors import KnowledgeFormatError, first_problem
from riad_agent.knowledge.search import SearchMode
from riad_agent.knowledge.store import QdrantKnowledgeBase

MODES: tuple[SearchMode, ...] = ("hybrid", "dense", "sparse")


class EvalQuery(BaseModel):
    """One labelled query."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1)
    category: str = Field(pattern=r"^[a-z0-9_]+/[a-z0-9_]+$")
    expected: str = Field(min_length=3)


class ModeScore(BaseModel):
    """Metrics of one mode under one filter setting."""

    mode: str
    filtered: bool
    queries: int
    recall_at_1: float
    recall_at_3: float
    mrr: float
    misses_at_1: list[str] = Field(default_factory=list, description="Queries whose top hit was wrong.")


class EvalReport(BaseModel):
    """Every mode with the category filter off and on."""

    queries: int
    scores: list[ModeScore]

    def get(self, mode: str, filtered: bool) -> ModeScore:
        return next(s for s in self.scores if s.mode == mode and s.filtered == filtered)


def default_queries_path() -> Path:
    """The packaged evaluation set."""
    return Path(__file__).resolve().parent / "eval" / "queries.yaml"


def load_queries(path: Path | None = None) -> list[EvalQuery]:
    """Read and validate the query set."""
    path = Path(path or default_queries_path())
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return TypeAdapter(list[EvalQuery]).validate_python(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise KnowledgeFormatError(f"{path}: cannot read the query set ({exc})") from exc
    except ValidationError as exc:
        where, problem = first_problem(exc, "file")
        raise KnowledgeFormatError(f"{path}: field {where!r}: {problem}") from exc


def _rank(ids: list[str], expected: str) -> int:
    return ids.index(expected) + 1 if expected in ids else 0


def _score(mode: str, filtered: bool, queries: list[EvalQuery], ranked: list[list[str]]) -> ModeScore:
    ranks = [_rank(ids, q.expected) for q, ids in zip(queries, ranked, strict=True)]
    n = max(1, len(queries))
    return ModeScore(
        mode=mode,
        filtered=filtered,
        queries=len(queries),
        recall_at_1=sum(r == 1 for r in ranks) / n,
        recall_at_3=sum(1 <= r <= 3 for r in ranks) / n,
        mrr=sum(1.0 / r for r in ranks if r) / n,
        misses_at_1=[
            f"{q.query} -> {ids[0] if ids else None} (want {q.expected})"
            for q, ids, r in zip(queries, ranked, ranks, strict=True)
            if r != 1
        ],
    )


def evaluate(
    kb: QdrantKnowledgeBase,
    queries: list[EvalQuery],
    modes: tuple[SearchMode, ...] = MODES,
    depth: int = 10,
) -> EvalReport:
    """Every mode, unfiltered and filtered by the query's category (MRR over the top ``depth``).

    The queries are embedded once, in batches, and reused by every mode and filter setting.
    """
    ranked: dict[tuple[str, bool], list[list[str]]] = {(m, f): [] for m in modes for f in (False, True)}
    encode_mode: SearchMode = "sparse" if set(modes) == {"sparse"} else "hybrid"
    all_encoded = kb.encode_queries([q.query for q in queries], encode_mode)
    for item, encoded in zip(queries, all_encoded, strict=True):
        for mode, filtered in ranked:
            hits = kb.search_encoded(
                encoded, category=item.category if filtered else None, k=depth, mode=mode
            )
            ranked[(mode, filtered)].append([h.id for h in hits])
    scores = [_score(m, f, queries, ranked[(m, f)]) for f in (False, True) for m in modes]
    return EvalReport(queries=len(queries), scores=scores)
