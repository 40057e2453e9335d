"""Category names: the canonical form, and the one policy that tells a typo from a new product.

A category is named ``dataset/category`` in snake case (``mvtec/hazelnut``). Callers may write the
short name (``hazelnut``) or MMAD's dataset spelling (``MVTec-AD/hazelnut``); :func:`resolve_category`
turns either into the canonical name or raises :class:`~riad_agent.errors.UnknownCategoryError`.

The error's ``close_matches`` decide what an unknown name is: the known categories whose short or
full name is at least :data:`TYPO_CUTOFF` similar to it (difflib ratio) make it a likely typo, which
callers report; none make it a new product, which callers may inspect without knowledge.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection

from pydantic import BaseModel, Field

from riad_agent.errors import UnknownCategoryError

#: A name at least this similar to a known category (short or full name) is a typo of it.
TYPO_CUTOFF = 0.75
#: The error message suggests the known categories at least this similar (a looser hint).
SUGGESTION_CUTOFF = 0.6

#: MMAD's dataset spellings -> our dataset keys.
MMAD_DATASETS: dict[str, str] = {
    "mvtec-ad": "mvtec",
    "mvtec_ad": "mvtec",
    "mvtec": "mvtec",
    "visa": "visa",
    "mvtec-loco": "mvtec_loco",
    "mvtec-loco-ad": "mvtec_loco",
    "mvtec_loco": "mvtec_loco",
    "goodsad": "goods_ad",
    "goods-ad": "goods_ad",
}

_NAME = re.compile(r"[^a-z0-9]+")


class CategoryInfo(BaseModel):
    """A category of the base and its defect types."""

    category: str = Field(description="Canonical 'dataset/category'.")
    dataset: str
    name: str
    defect_types: list[str] = Field(default_factory=list)
    has_normal: bool = False


def snake(name: str) -> str:
    """'MVTec-AD' -> 'mvtec_ad', 'Screw Bag' -> 'screw_bag'."""
    return _NAME.sub("_", name.strip().lower()).strip("_")


def canonical_name(name: str) -> str:
    """The name in canonical spelling, known or not: 'MVTec-AD/Screw Bag' -> 'mvtec/screw_bag'."""
    raw = name.strip().lower()
    if "/" not in raw:
        return snake(raw)
    dataset, _, short = raw.partition("/")
    return f"{MMAD_DATASETS.get(dataset, snake(dataset))}/{snake(short)}"


def _short(key: str) -> str:
    return key.split("/", 1)[1]


def likely_typos(name: str, known: Collection[str]) -> list[str]:
    """The known categories ``name`` is a likely typo of (closest first; empty: a new name)."""
    by_name: dict[str, list[str]] = {}
    for key in known:
        by_name.setdefault(key, []).append(key)
        by_name.setdefault(_short(key), []).append(key)
    close = difflib.get_close_matches(canonical_name(name), sorted(by_name), n=5, cutoff=TYPO_CUTOFF)
    return list(dict.fromkeys(key for match in close for key in sorted(by_name[match])))


def resolve_category(name: str, known: Collection[str]) -> str:
    """'hazelnut' or 'mvtec/hazelnut' -> 'mvtec/hazelnut' given the ``known`` canonical names.

    A known canonical name is returned as it is. Otherwise raises :class:`UnknownCategoryError`:
    for an empty base, an ambiguous short name (``close_matches`` = its datasets' categories) or an
    unknown name (``close_matches`` = :func:`likely_typos`; the message suggests looser matches).
    """
    if name in known:
        return name
    if not known:
        raise UnknownCategoryError(
            "the knowledge base is empty; ingest knowledge first (riad kb ingest PATH)"
        )
    key = canonical_name(name)
    if "/" in key:
        if key in known:
            return key
        suggestions = difflib.get_close_matches(key, list(known), n=5, cutoff=SUGGESTION_CUTOFF)
    else:
        matches = [k for k in known if _short(k) == key]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UnknownCategoryError(
                f"category {name!r} is ambiguous: it exists in several datasets "
                f"({', '.join(matches)}); use the full 'dataset/category' name",
                close_matches=matches,
            )
        shorts = {_short(k): k for k in known}
        close = difflib.get_close_matches(key, list(shorts), n=5, cutoff=SUGGESTION_CUTOFF)
        suggestions = [k for s in close for k in known if _short(k) == s]
    hint = f"close matches: {', '.join(suggestions)}" if suggestions else "run 'riad kb list' for all"
    raise UnknownCategoryError(f"unknown category {name!r}; {hint}", close_matches=likely_typos(name, known))
