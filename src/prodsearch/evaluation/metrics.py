"""Ranking and classification metrics as vectorised numpy (no torch, no IR library at run time).

Every ranking metric takes a *gain matrix* ``gains`` (Q, D): the graded relevance of the document
at each rank of each query's ranked list (best first; 0 for non-relevant and for padding past the
end of a short list). Binary metrics call a document relevant when its grade is ``>= rel_level``.

Definitions follow trec_eval / ranx (cross-checked against ranx in the tests):

* ``recall@k``    = relevant in top k / all relevant;
* ``precision@k`` = relevant in top k / k (a short list counts its missing ranks as misses);
* ``hit@k``       = 1 if any relevant document is in the top k (a.k.a. success@k);
* ``mrr``         = 1 / rank of the first relevant document within the list (0 if none);
* ``ap@k``        = sum of precision@r over relevant ranks r <= k / all relevant (trec_eval AP,
  truncated at k; ``map`` is its mean);
* ``ndcg@k``      = DCG@k / ideal DCG@k with linear gains (Järvelin & Kekäläinen 2002, ranx ``ndcg``,
  trec_eval ``ndcg_cut``): DCG = sum_i grade_i / log2(i + 1).

A query with no relevant document has no defined recall / MRR / AP / nDCG: those metrics return NaN
for it and :func:`mean` skips NaNs (trec_eval likewise ignores queries absent from the qrels).
Precision stays defined (0).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

#: Metric names understood by :func:`compute`; ``@k`` is required except for ``mrr``.
RANKING_METRICS = ("recall", "precision", "hit", "mrr", "ap", "map", "ndcg")
_SPEC = re.compile(r"^(?P<name>[a-z_]+)(?:@(?P<k>\d+))?$")


def _binary(gains: np.ndarray, rel_level: int) -> np.ndarray:
    return (np.asarray(gains) >= rel_level).astype(np.float64)


def _cut(x: np.ndarray, k: int | None) -> np.ndarray:
    if k is None:
        return x
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return x[:, :k]


def _undefined(n_rel: np.ndarray) -> np.ndarray:
    return np.asarray(n_rel) <= 0


def recall_at_k(gains: np.ndarray, n_rel: np.ndarray, k: int, rel_level: int = 1) -> np.ndarray:
    """Per-query recall@k, (Q,). ``n_rel`` (Q,): number of documents with grade >= ``rel_level``."""
    hits = _binary(_cut(gains, k), rel_level).sum(axis=1)
    n_rel = np.asarray(n_rel, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = hits / n_rel
    out[_undefined(n_rel)] = np.nan
    return out


def precision_at_k(gains: np.ndarray, k: int, rel_level: int = 1) -> np.ndarray:
    """Per-query precision@k, (Q,); ranks past the end of the list count as non-relevant."""
    return _binary(_cut(gains, k), rel_level).sum(axis=1) / float(k)


def hit_at_k(gains: np.ndarray, n_rel: np.ndarray, k: int, rel_level: int = 1) -> np.ndarray:
    """Per-query success@k: 1.0 if a relevant document is in the top k, (Q,)."""
    out = (_binary(_cut(gains, k), rel_level).sum(axis=1) > 0).astype(np.float64)
    out[_undefined(n_rel)] = np.nan
    return out


def reciprocal_rank(
    gains: np.ndarray, n_rel: np.ndarray, k: int | None = None, rel_level: int = 1
) -> np.ndarray:
    """Per-query reciprocal rank of the first relevant document within the top k (0 if none), (Q,)."""
    rel = _binary(_cut(gains, k), rel_level)
    found = rel.any(axis=1)
    first = np.argmax(rel, axis=1)
    out = np.where(found, 1.0 / (first + 1.0), 0.0)
    out[_undefined(n_rel)] = np.nan
    return out


def average_precision(
    gains: np.ndarray, n_rel: np.ndarray, k: int | None = None, rel_level: int = 1
) -> np.ndarray:
    """Per-query average precision (truncated at k), divided by all relevant documents, (Q,)."""
    rel = _binary(_cut(gains, k), rel_level)
    ranks = np.arange(1, rel.shape[1] + 1, dtype=np.float64)
    prec_at_r = np.cumsum(rel, axis=1) / ranks
    n_rel = np.asarray(n_rel, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (prec_at_r * rel).sum(axis=1) / n_rel
    out[_undefined(n_rel)] = np.nan
    return out


def dcg_at_k(gains: np.ndarray, k: int) -> np.ndarray:
    """Per-query DCG@k with linear gains, (Q,)."""
    g = np.asarray(_cut(gains, k), dtype=np.float64)
    disc = 1.0 / np.log2(np.arange(2, g.shape[1] + 2, dtype=np.float64))
    return (g * disc).sum(axis=1)


def ndcg_at_k(gains: np.ndarray, ideal: np.ndarray, k: int) -> np.ndarray:
    """Per-query nDCG@k, (Q,). ``ideal`` (Q, >=k): each query's grades sorted descending (0-padded)."""
    idcg = dcg_at_k(ideal, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = dcg_at_k(gains, k) / idcg
    out[idcg <= 0] = np.nan
    return out


def parse_metric(spec: str) -> tuple[str, int | None]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``; ``"mrr"`` -> ``("mrr", None)``. Raises ``ValueError`` naming the spec."""
    m = _SPEC.match(spec)
    if not m or m["name"] not in RANKING_METRICS:
        raise ValueError(
            f"unknown metric {spec!r}; expected one of {RANKING_METRICS} with @k, e.g. 'recall@10'"
        )
    k = int(m["k"]) if m["k"] else None
    if k is None and m["name"] not in ("mrr", "ap", "map"):
        raise ValueError(f"metric {spec!r} needs a cutoff, e.g. '{m['name']}@10'")
    return m["name"], k


def compute(
    spec: str, gains: np.ndarray, n_rel: np.ndarray, ideal: np.ndarray | None = None, rel_level: int = 1
) -> np.ndarray:
    """Per-query values of the metric named ``spec`` (e.g. ``"recall@10"``), (Q,).

    ``n_rel`` counts documents with grade >= ``rel_level``; ``ideal`` is needed for nDCG only.
    """
    name, k = parse_metric(spec)
    if name == "recall":
        return recall_at_k(gains, n_rel, k, rel_level)
    if name == "precision":
        return precision_at_k(gains, k, rel_level)
    if name == "hit":
        return hit_at_k(gains, n_rel, k, rel_level)
    if name == "mrr":
        return reciprocal_rank(gains, n_rel, k, rel_level)
    if name in ("ap", "map"):
        return average_precision(gains, n_rel, k, rel_level)
    if ideal is None:
        raise ValueError("ndcg needs the ideal gains")
    return ndcg_at_k(gains, ideal, k)


def mean(values: np.ndarray) -> float:
    """Mean over queries where the metric is defined (NaN-skipping); NaN if none is."""
    v = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(v)
    return float(v[ok].mean()) if ok.any() else float("nan")


# ---------------------------------------------------------------------------- classification
def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """(C, C) int64 counts; rows = true class, columns = predicted class."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} must have the same shape")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def accuracy(conf: np.ndarray) -> float:
    total = conf.sum()
    return float(np.trace(conf) / total) if total else float("nan")


def f1_per_class(conf: np.ndarray) -> np.ndarray:
    """(C,) F1 per class; 0 where precision + recall is 0 (scikit-learn's ``zero_division=0``)."""
    tp = np.diag(conf).astype(np.float64)
    pred = conf.sum(axis=0).astype(np.float64)
    true = conf.sum(axis=1).astype(np.float64)
    denom = pred + true
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    return f1


def weighted_f1(conf: np.ndarray) -> float:
    """F1 averaged over classes weighted by their true support (scikit-learn ``average='weighted'``)."""
    support = conf.sum(axis=1).astype(np.float64)
    if support.sum() == 0:
        return float("nan")
    return float((f1_per_class(conf) * support).sum() / support.sum())
