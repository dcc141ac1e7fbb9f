"""Ranking, one part of the search engine (:class:`prodsearch.search.engine.Engine`): the signals'
rankings fused (RRF, weighted sum or the calibrated fusion), the pinned same photo first, paging,
facets and per-result explanations."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from prodsearch.catalog.schema import Product
from prodsearch.errors import QueryError
from prodsearch.search.results import Explanation, SearchResponse, SearchResult

if TYPE_CHECKING:
    from prodsearch.search.engine import Engine

_WORD = re.compile(r"\w+", re.UNICODE)


def finish(
    engine: Engine,
    rankings: dict[str, Any],
    weights: dict[str, float],
    fusion: str,
    k: int,
    offset: int,
    text: str | None,
    timings: dict[str, float],
    mode: str,
    explain: bool,
    facets: Sequence[str] | bool | None,
    qvecs: dict[str, np.ndarray],
    exclude: Sequence[int] = (),
    pinned: Sequence[int] = (),
) -> SearchResponse:
    from prodsearch.index.fusion import fuse

    t = time.perf_counter()
    active = {s: h for s, h in rankings.items() if weights.get(s, 1.0) > 0}
    if not active and rankings:
        # the calibration gave every signal of this mode weight 0 (e.g. the trained space alone
        # for a text query): a mode the user asked for still ranks by its own signals, equally
        active, weights = dict(rankings), {s: 1.0 for s in rankings}
    if not active:
        raise QueryError("every signal this query reaches has weight 0")
    if len(active) == 1:
        ((sig, hits),) = active.items()
        fused_iids, fused_scores = np.asarray(hits.iids), np.asarray(hits.scores, dtype=np.float32)
        contrib = {int(i): {sig: float(s)} for i, s in zip(fused_iids, fused_scores, strict=False)}
    else:
        cal = engine.calibration or {}
        fused, contrib = fuse(
            fusion,
            active,
            {s: weights[s] for s in active},
            stats={s: tuple(v) for s, v in cal.get("stats", {}).items()},
        )
        fused_iids, fused_scores = np.asarray(fused.iids), np.asarray(fused.scores, dtype=np.float32)
    if len(pinned):
        excluded = set(exclude)
        pin = np.asarray([i for i in pinned if i not in excluded], dtype=np.int64)
        rest = ~np.isin(fused_iids, pin)
        top = fused_scores.max() if len(fused_scores) else 0.0
        fused_iids = np.concatenate([pin, fused_iids[rest]])
        fused_scores = np.concatenate([np.full(len(pin), top, np.float32), fused_scores[rest]])
        for i in pin.tolist():
            contrib.setdefault(int(i), {})["same_photo"] = 1.0
    if len(exclude):
        keep = ~np.isin(fused_iids, np.asarray(exclude))
        fused_iids, fused_scores = fused_iids[keep], fused_scores[keep]
    timings["fuse"] = time.perf_counter() - t

    page = slice(offset, offset + k)
    iids, scores = fused_iids[page], fused_scores[page]
    products = engine.store.by_iids(iids.tolist())
    results = []
    for rank, (iid, score, p) in enumerate(
        zip(iids.tolist(), scores.tolist(), products, strict=False), start=offset + 1
    ):
        expl = (
            explain_result(engine, iid, p, contrib.get(int(iid), {}), rankings, text, qvecs)
            if explain
            else None
        )
        results.append(
            SearchResult(
                id=p.id,
                score=float(score),
                rank=rank,
                title=p.title,
                attributes=p.attributes,
                text=p.text,
                image_path=p.image_path,
                explanation=expl,
            )
        )
    fac = None
    if facets:
        fields = None if facets is True else list(facets)
        fac = engine.facets(fields, iids=fused_iids)
    return SearchResponse(
        results=results,
        mode=mode,
        signals=sorted(active),
        candidates=len(fused_iids),
        timings=timings,
        facets=fac,
        model=engine.model_version,  # read under the same lock as the search: one model per answer
    )


def explain_result(
    engine: Engine,
    iid: int,
    product: Product,
    contributions: dict[str, float],
    rankings: dict[str, Any],
    text: str | None,
    qvecs: dict[str, np.ndarray],
) -> Explanation:
    sims: dict[str, float] = {}
    for kind, q in qvecs.items():
        if kind in rankings and iid in engine.vectors[kind]:
            sims[kind] = float(engine.vectors[kind].get(np.asarray([iid]))[0] @ q)
    if "lexical" in rankings:
        lex = rankings["lexical"]
        hit = np.nonzero(np.asarray(lex.iids) == iid)[0]
        sims["lexical"] = float(np.asarray(lex.scores)[hit[0]]) if len(hit) else 0.0
    terms = engine.lexical.matched_terms(text, product.full_text()) if text else []
    return Explanation(
        contributions={s: float(v) for s, v in contributions.items()},
        similarities=sims,
        matched_terms=terms,
        matched_attributes=matched_attributes(text, product.attributes),
    )


# ------------------------------------------------------------------ item-to-item


def matched_attributes(text: str | None, attributes: dict[str, str]) -> dict[str, str]:
    """Attributes whose whole value (all its words) occurs in the query text, case-insensitively."""
    if not text:
        return {}
    q = set(_WORD.findall(text.lower()))
    out = {}
    for field, value in attributes.items():
        words = _WORD.findall(str(value).lower())
        if words and all(w in q for w in words):
            out[field] = value
    return out
