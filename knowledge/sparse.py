"""Hashing BM25: sparse vectors for Qdrant, with the corpus statistics kept for consistent queries.

Documents carry the BM25 term-frequency part, ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))``;
queries carry the inverse document frequency of each of their terms. Their dot product, which is
what Qdrant computes for sparse vectors, is the BM25 score. Terms are lower-cased, lightly stemmed
and hashed into ``2**index_bits`` slots so no vocabulary has to be stored.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable

from pydantic import BaseModel, Field

_WORD = re.compile(r"[a-z0-9]+")

_STOPWORD_TEXT = """
a an and are as at be been but by can do does for from has have how i if in into is it its may might of on
or so such than that the their them then there these they this those to was were what when where which while
who will with would you your any some
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def stem(word: str) -> str:
    """A small suffix stripper: plurals, -ing, -ed, -ly, -ness, -ation (good enough for BM25)."""
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix, replacement in (
        ("ational", "ate"),
        ("ization", "ize"),
        ("iveness", "ive"),
        ("fulness", "ful"),
        ("ousness", "ous"),
        ("ation", "ate"),
        ("ness", ""),
        ("ies", "y"),
        ("ing", ""),
        ("edly", ""),
        ("ed", ""),
        ("ly", ""),
        ("es", ""),
        ("s", ""),
    ):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            if suffix == "es" and not word.endswith(("shes", "ches", "xes", "sses", "zes")):
                return word[:-1]
            return word[: len(word) - len(suffix)] + replacement
    return word


def tokenize(text: str) -> list[str]:
    """Lower-cased, stop-word-free, stemmed terms."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


class SparseVector(BaseModel):
    """Indices and values of a sparse vector (indices sorted, unique)."""

    indices: list[int]
    values: list[float]


class BM25Stats(BaseModel):
    """Corpus statistics: document count, average length and document frequency per hashed term."""

    index_bits: int = Field(default=20, ge=8, le=31)
    k1: float = Field(default=1.2, ge=0.0)
    b: float = Field(default=0.75, ge=0.0, le=1.0)
    n_docs: int = 0
    avgdl: float = 0.0
    df: dict[int, int] = Field(default_factory=dict)

    def idf(self, index: int) -> float:
        """Okapi IDF, always positive: ``ln(1 + (N - df + 0.5) / (df + 0.5))``."""
        df = self.df.get(index, 0)
        return math.log(1.0 + (self.n_docs - df + 0.5) / (df + 0.5))


class HashingBM25:
    """Turns text into hashed BM25 document and query vectors."""

    def __init__(self, index_bits: int = 20, k1: float = 1.2, b: float = 0.75) -> None:
        self.index_bits = index_bits
        self.k1 = k1
        self.b = b

    def index_of(self, term: str) -> int:
        """Slot of a term in the hashed space (stable across processes)."""
        return zlib.crc32(term.encode("utf-8")) & ((1 << self.index_bits) - 1)

    def term_counts(self, text: str) -> Counter[int]:
        """Hashed term frequencies of a text."""
        return Counter(self.index_of(t) for t in tokenize(text))

    def fit(self, texts: Iterable[str]) -> BM25Stats:
        """Corpus statistics of the documents."""
        df: Counter[int] = Counter()
        total = 0
        n = 0
        for text in texts:
            counts = self.term_counts(text)
            df.update(counts.keys())
            total += sum(counts.values())
            n += 1
        return BM25Stats(
            index_bits=self.index_bits,
            k1=self.k1,
            b=self.b,
            n_docs=n,
            avgdl=(total / n) if n else 0.0,
            df=dict(df),
        )

    def document_vector(self, text: str, avgdl: float) -> SparseVector:
        """Saturated, length-normalised term frequencies of one document."""
        counts = self.term_counts(text)
        length = sum(counts.values())
        norm = self.k1 * (1.0 - self.b + self.b * (length / avgdl if avgdl > 0 else 1.0))
        items = sorted(counts.items())
        return SparseVector(
            indices=[i for i, _ in items],
            values=[tf * (self.k1 + 1.0) / (tf + norm) for _, tf in items],
        )

    def query_vector(self, text: str, stats: BM25Stats) -> SparseVector:
        """IDF of each distinct query term (repeated terms count once)."""
        indices = sorted(set(self.term_counts(text)))
        return SparseVector(indices=indices, values=[stats.idf(i) for i in indices])


def avgdl_drifted(stored: float, current: float, tolerance: float = 0.2) -> bool:
    """Whether document vectors built with ``stored`` should be rebuilt for ``current``."""
    if stored <= 0:
        return current > 0
    return abs(current - stored) / stored > tolerance
