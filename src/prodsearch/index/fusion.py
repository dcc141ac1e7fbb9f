"""Fusing ranked lists from several signals (lexical, text vectors, image vectors) into one ranking.
Pure functions over :class:`Hits`; numpy only.

Every function returns :class:`Fused` ``(hits, contributions)``, a named tuple so it also unpacks
as a pair: ``hits`` is the fused ranking (best first; ties broken by smaller iid) and
``contributions[iid][signal]`` is the part of that iid's fused score that came from ``signal``
(the parts sum to the fused score; a signal that did not return the iid contributes nothing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from prodsearch.errors import QueryError
from prodsearch.index.types import Hits

NORMALIZATIONS = ("minmax", "zscore", None)
METHODS = ("rrf", "weighted", "calibrated")


class Fused(NamedTuple):
    hits: Hits
    contributions: dict[int, dict[str, float]]


def _weights(signals: Mapping[str, Hits], weights: Mapping[str, float] | None) -> dict[str, float]:
    """Weight per signal (default 1.0); signals with weight 0 are dropped."""
    out = {}
    for s in signals:
        w = 1.0 if weights is None else weights.get(s, 1.0)
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w < 0:
            raise QueryError(f"fusion weight for signal {s!r} must be a finite number >= 0, got {w!r}")
        if w > 0:
            out[s] = float(w)
    return out


def _finish(total: dict[int, float], contributions: dict[int, dict[str, float]]) -> Fused:
    if not total:
        return Fused(Hits.empty(), {})
    iids = np.fromiter(total.keys(), np.int64, len(total))
    scores = np.fromiter(total.values(), np.float64, len(total))
    order = np.lexsort((iids, -scores))
    return Fused(Hits(iids[order], scores[order]), contributions)


def rrf(rankings: Mapping[str, Hits], weights: Mapping[str, float] | None = None, k: float = 60) -> Fused:
    """Weighted reciprocal rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009):
    ``score(d) = sum_s w_s / (k + rank_s(d))`` with 1-based ranks; scores themselves are ignored,
    so signals on different scales combine without calibration."""
    if k < 0:
        raise QueryError(f"RRF k must be >= 0, got {k}")
    total: dict[int, float] = {}
    contributions: dict[int, dict[str, float]] = {}
    for signal, w in _weights(rankings, weights).items():
        for rank, iid in enumerate(rankings[signal].iids.tolist(), start=1):
            part = w / (k + rank)
            total[iid] = total.get(iid, 0.0) + part
            contributions.setdefault(iid, {})[signal] = part
    return _finish(total, contributions)


def normalize_scores(scores: np.ndarray, method: str | None) -> np.ndarray:
    """Scale one signal's scores (N,): "minmax" -> [0, 1] (all equal -> all 1), "zscore" ->
    mean 0 / std 1 (all equal -> all 0), None -> unchanged. Returns float64."""
    s = np.asarray(scores, dtype=np.float64)
    if method is None or s.size == 0:
        return s
    if method == "minmax":
        lo, hi = s.min(), s.max()
        return np.ones_like(s) if hi == lo else (s - lo) / (hi - lo)
    if method == "zscore":
        sd = s.std()
        return np.zeros_like(s) if sd == 0 else (s - s.mean()) / sd
    raise QueryError(f"unknown score normalization {method!r}; expected one of {NORMALIZATIONS}")


def weighted_sum(
    scores: Mapping[str, Hits], weights: Mapping[str, float] | None = None, normalize: str | None = "minmax"
) -> Fused:
    """``score(d) = sum_s w_s * norm_s(score_s(d))``, each signal normalised over its own list;
    an iid missing from a signal's list gets 0 from it (after normalisation)."""
    if normalize not in NORMALIZATIONS:
        raise QueryError(f"unknown score normalization {normalize!r}; expected one of {NORMALIZATIONS}")
    total: dict[int, float] = {}
    contributions: dict[int, dict[str, float]] = {}
    for signal, w in _weights(scores, weights).items():
        hits = scores[signal]
        norm = normalize_scores(hits.scores, normalize)
        for iid, v in zip(hits.iids.tolist(), norm.tolist(), strict=True):
            part = w * v
            total[iid] = total.get(iid, 0.0) + part
            contributions.setdefault(iid, {})[signal] = part
    return _finish(total, contributions)


def signal_values(signal: str, scores: np.ndarray) -> np.ndarray:
    """The value a signal's score contributes before calibration: cosine similarities as they are
    (their scale means the same for every query); BM25 divided by the list's best score, because
    raw BM25 grows with the query's length and rarity and is not comparable across queries."""
    s = np.asarray(scores, dtype=np.float64)
    if signal == "lexical" and s.size:
        top = s.max()
        return s / top if top > 0 else np.zeros_like(s)
    return s


def calibrated(
    rankings: Mapping[str, Hits],
    weights: Mapping[str, float] | None,
    stats: Mapping[str, tuple[float, float]],
) -> Fused:
    """Calibrated score fusion: ``score(d) = sum_s w_s * (v_s(d) - mean_s) / std_s``.

    ``v_s`` is :func:`signal_values`; ``stats[s] = (mean_s, std_s)`` were measured once over the
    candidate lists of calibration queries (search/calibration.py), so a signal that is confidently
    high or weak for this query keeps that meaning, unlike per-list min-max, where every list's best
    hit scores 1 however poor it is (the failure that let a weak signal drag a strong one down). An
    iid missing from a signal's list gets that list's lowest value (an upper bound on its own).
    """
    w = _weights(rankings, weights)
    lists = {s: (np.asarray(rankings[s].iids), signal_values(s, rankings[s].scores)) for s in w}
    floor = {}
    for s, (_, v) in lists.items():
        mu, sd = stats.get(s, (0.0, 1.0))
        floor[s] = ((v.min() if v.size else mu) - mu) / (sd or 1.0)
    total: dict[int, float] = {}
    contributions: dict[int, dict[str, float]] = {}
    for s, (iids, vals) in lists.items():
        mu, sd = stats.get(s, (0.0, 1.0))
        z = (vals - mu) / (sd or 1.0)
        for iid, v in zip(iids.tolist(), z.tolist(), strict=True):
            contributions.setdefault(iid, {})[s] = w[s] * v
    for iid, parts in contributions.items():
        for s in w:
            if s not in parts:
                parts[s] = w[s] * floor[s]
        total[iid] = sum(parts.values())
    return _finish(total, contributions)


def fuse(
    method: str,
    rankings: Mapping[str, Hits],
    weights: Mapping[str, float] | None = None,
    *,
    k: float = 60,
    normalize: str | None = "minmax",
    stats: Mapping[str, tuple[float, float]] | None = None,
) -> Fused:
    """Dispatch: ``method`` "rrf" (uses ``k``), "weighted" (uses ``normalize``) or "calibrated"
    (uses ``stats``)."""
    if method == "rrf":
        return rrf(rankings, weights, k=k)
    if method == "weighted":
        return weighted_sum(rankings, weights, normalize=normalize)
    if method == "calibrated":
        return calibrated(rankings, weights, stats or {})
    raise QueryError(f"unknown fusion method {method!r}; expected one of {METHODS}")
