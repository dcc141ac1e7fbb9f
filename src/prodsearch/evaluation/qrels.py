"""Relevance judgements (qrels) over a corpus of N products addressed by position 0..N-1, and
turning ranked lists into the gain matrices that :mod:`prodsearch.evaluation.metrics` scores.

Judgements are computed per query as a dense grade vector (N,) instead of stored as dicts: an
attribute query like "blue shirt" can have thousands of graded documents, and a dense vector makes
both the gains of a ranked list and the ideal ranking (from grade counts) cheap.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from prodsearch.evaluation import metrics as M


class Qrels(ABC):
    """Graded relevance of every corpus document for each of ``n_queries`` queries."""

    n_docs: int

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def dense(self, q: int) -> np.ndarray:
        """Grades of all documents for query ``q``: (N,) int8, 0 = not relevant."""


class ExplicitQrels(Qrels):
    """Judgements given as one ``{doc_position: grade}`` dict per query."""

    def __init__(self, judgements: Sequence[Mapping[int, int]], n_docs: int):
        self.judgements = [dict(j) for j in judgements]
        self.n_docs = n_docs

    def __len__(self) -> int:
        return len(self.judgements)

    def dense(self, q: int) -> np.ndarray:
        g = np.zeros(self.n_docs, dtype=np.int8)
        for d, grade in self.judgements[q].items():
            g[d] = grade
        return g


class LabelQrels(Qrels):
    """Grade 1 for every document whose label equals the query's label (identical title, same photo,
    same type and colour...). ``doc_labels`` (N,) int; ``query_labels`` (Q,) int; label -1 never matches."""

    def __init__(self, doc_labels: np.ndarray, query_labels: np.ndarray):
        self.doc_labels = np.asarray(doc_labels, dtype=np.int64)
        self.query_labels = np.asarray(query_labels, dtype=np.int64)
        self.n_docs = len(self.doc_labels)

    def __len__(self) -> int:
        return len(self.query_labels)

    def dense(self, q: int) -> np.ndarray:
        lab = self.query_labels[q]
        if lab < 0:
            return np.zeros(self.n_docs, dtype=np.int8)
        return (self.doc_labels == lab).astype(np.int8)


class AttributeQrels(Qrels):
    """Graded attribute judgements: 2 when every requested attribute matches, 1 when only the type
    matches, else 0.

    ``doc_codes`` (N, F) int: each document's value code per attribute field (-1 = missing);
    ``requests``: per query, ``{field_index: value_code}`` including the type field;
    ``type_field``: the field index whose match alone earns grade 1.
    """

    def __init__(self, doc_codes: np.ndarray, requests: Sequence[Mapping[int, int]], type_field: int):
        self.doc_codes = np.asarray(doc_codes, dtype=np.int64)
        self.requests = [dict(r) for r in requests]
        self.type_field = type_field
        self.n_docs = self.doc_codes.shape[0]

    def __len__(self) -> int:
        return len(self.requests)

    def dense(self, q: int) -> np.ndarray:
        req = self.requests[q]
        type_ok = self.doc_codes[:, self.type_field] == req[self.type_field]
        all_ok = np.ones(self.n_docs, dtype=bool)
        for f, code in req.items():
            all_ok &= self.doc_codes[:, f] == code
        return np.where(all_ok, 2, np.where(type_ok, 1, 0)).astype(np.int8)


@dataclass
class Judgement:
    """One way of judging a protocol's rankings: qrels, the metrics to report and the binary threshold.

    ``prefix`` is prepended to metric names in the report (e.g. ``type_colour_`` ->
    ``image2product/type_colour_precision@10``). ``eligible`` (N,) bool restricts the documents that
    count as relevant (e.g. only products with a photo can be found among image vectors).
    """

    qrels: Qrels
    metrics: list[str]
    rel_level: int = 1
    prefix: str = ""
    eligible: np.ndarray | None = None
    curve: bool = False  # also report recall@K for K in CURVE_KS
    extra: dict = field(default_factory=dict)


#: Cutoffs of the recall@K curves drawn in the report.
CURVE_KS = (1, 2, 5, 10, 20, 50, 100)


def gain_matrix(
    rankings: np.ndarray, qrels: Qrels, *, rel_level: int = 1, eligible: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gains of ranked lists under ``qrels``.

    ``rankings`` (Q, D) int64 corpus positions best first, -1 = padding. Returns ``gains`` (Q, D),
    ``n_rel`` (Q,) documents with grade >= ``rel_level``, ``ideal`` (Q, D) grades sorted descending.
    """
    rankings = np.asarray(rankings, dtype=np.int64)
    q_count, depth = rankings.shape
    if len(qrels) != q_count:
        raise ValueError(f"{q_count} ranked lists but {len(qrels)} judged queries")
    gains = np.zeros((q_count, depth), dtype=np.int64)
    ideal = np.zeros((q_count, depth), dtype=np.int64)
    n_rel = np.zeros(q_count, dtype=np.int64)
    for q in range(q_count):
        g = qrels.dense(q).astype(np.int64)
        if eligible is not None:
            g = g * eligible
        row = rankings[q]
        valid = row >= 0
        gains[q, valid] = g[row[valid]]
        counts = np.bincount(g, minlength=1)
        n_rel[q] = counts[rel_level:].sum()
        # ideal list: every grade repeated by its count, highest first, truncated to depth
        grades = np.repeat(np.arange(len(counts))[::-1], counts[::-1])[:depth]
        ideal[q, : len(grades)] = grades
    return gains, n_rel, ideal


def score(rankings: np.ndarray, judgement: Judgement) -> dict[str, np.ndarray]:
    """Per-query values ``{metric_name: (Q,)}`` of ``judgement.metrics`` (plus the recall curve)."""
    gains, n_rel, ideal = gain_matrix(
        rankings, judgement.qrels, rel_level=judgement.rel_level, eligible=judgement.eligible
    )
    out = {}
    for spec in judgement.metrics:
        out[judgement.prefix + spec] = M.compute(spec, gains, n_rel, ideal, judgement.rel_level)
    if judgement.curve:
        for k in CURVE_KS:
            key = f"{judgement.prefix}recall@{k}"
            if key not in out and k <= gains.shape[1]:
                out[key] = M.recall_at_k(gains, n_rel, k, judgement.rel_level)
    return out
