"""Index layer: the vector backend interface and its embedded FAISS store (exact/HNSW main segment
plus a delta segment), BM25 lexical index, attribute filters and rank fusion.

Importing this package is cheap: faiss and bm25s are imported only when an index needs them.
"""

from __future__ import annotations

from prodsearch.index.backend import FaissBackend, VectorBackend, create_backend, load_backend
from prodsearch.index.filters import (
    And,
    FieldCondition,
    Filter,
    Not,
    Or,
    evaluate,
    facet_counts,
    matches,
    parse_filter,
)
from prodsearch.index.fusion import Fused, fuse, normalize_scores, rrf, weighted_sum
from prodsearch.index.lexical import LexicalIndex
from prodsearch.index.types import Hits, top_k
from prodsearch.index.vector import VectorIndex, exact_search

__all__ = [
    "And",
    "FaissBackend",
    "FieldCondition",
    "Filter",
    "Fused",
    "Hits",
    "LexicalIndex",
    "Not",
    "Or",
    "VectorBackend",
    "VectorIndex",
    "evaluate",
    "create_backend",
    "exact_search",
    "facet_counts",
    "fuse",
    "load_backend",
    "matches",
    "normalize_scores",
    "parse_filter",
    "rrf",
    "top_k",
    "weighted_sum",
]
