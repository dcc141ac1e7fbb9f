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
METHODS = ("rrf", "weighted")


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


def fuse(
    method: str,
    rankings: Mapping[str, Hits],
    weights: Mapping[str, float] | None = None,
    *,
    k: float = 60,
    normalize: str | None = "minmax",
) -> Fused:
    """Dispatch: ``method`` "rrf" (uses ``k``) or "weighted" (uses ``normalize``)."""
    if method == "rrf":
        return rrf(rankings, weights, k=k)
    if method == "weighted":
        return weighted_sum(rankings, weights, normalize=normalize)
    raise QueryError(f"unknown fusion method {method!r}; expected one of {METHODS}")
