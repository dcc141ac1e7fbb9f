"""Retrieval, one part of the search engine (:class:`prodsearch.search.engine.Engine`): each signal a
query reaches (BM25, the vector kinds, the popularity prior) ranked to a depth before fusion, and the
catalog photos that are the query photo itself (pinned first by ranking)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from prodsearch.search.query import encode_query

if TYPE_CHECKING:
    from prodsearch.search.engine import Engine

#: Untuned photo similarity at or above this is the same photo (re-encoded, resized): that product
#: is put first in every mode, whatever the fusion says (a shopper's photo of the product itself).
SAME_PHOTO = 0.985


def retrieve(
    engine: Engine,
    text: str | None,
    image: Any,
    want: tuple[str, ...],
    depth: int,
    filters: Any,
    allowed: np.ndarray | None,
    timings: dict[str, float],
    *,
    negative: str | None = None,
    image_weight: float = 0.5,
    negative_weight: float = 1.0,
    anchor: bool = True,
    anchor_pool: int | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray], list[int]]:
    """Every signal in ``want`` that the query reaches, ranked to ``depth`` before fusion:
    ``(rankings {signal: Hits}, query vectors {kind: (D,)}, pinned same-photo iids)``.
    ``anchor`` / ``anchor_pool``: a photo+text query ranked within the photo's anchor set
    (search/compose.py) of that size."""
    rankings: dict[str, Any] = {}
    needs_vectors = any(s in want for s in ("text", "image", "joint")) or image is not None
    qvecs = (
        encode_query(engine, text, image, negative, image_weight, negative_weight, timings, want)
        if needs_vectors
        else {}
    )
    if anchor and text and image is not None and "image" in engine.vectors:
        from prodsearch.search.compose import anchored_rankings

        rankings = anchored_rankings(
            engine, text, image, want, qvecs, allowed, depth, timings, pool=anchor_pool
        )
        want = ()  # already ranked, within the photo's anchor set
    if "lexical" in want and text:
        t = time.perf_counter()
        rankings["lexical"] = engine.lexical.search(text, depth, allowed=allowed)
        timings["lexical"] = time.perf_counter() - t
    t = time.perf_counter()
    for kind in ("text", "image", "joint"):
        if kind in want and kind in qvecs:
            rankings[kind] = engine.vectors[kind].search(
                qvecs[kind][None], depth, filter=engine._parse_filter(filters), allowed=allowed
            )[0]
    timings["ann"] = time.perf_counter() - t
    if "popularity" in want and engine.popularity and rankings:
        rankings["popularity"] = popularity_hits(engine, rankings)
    pinned = same_photo(engine, qvecs, rankings, filters, allowed) if image is not None else []
    return rankings, qvecs, pinned


def popularity_hits(engine: Engine, rankings: dict[str, Any]) -> Any:
    """The other signals' candidates ranked by popularity (0 for products shoppers never chose):
    a prior that re-orders what the query found, never a source of candidates of its own."""
    from prodsearch.index.types import Hits

    iids = np.unique(np.concatenate([np.asarray(h.iids) for h in rankings.values()]))
    vals = np.asarray([engine.popularity.get(int(i), 0.0) for i in iids.tolist()], dtype=np.float64)
    order = np.lexsort((iids, -vals))
    return Hits(iids[order], vals[order])


def same_photo(
    engine: Engine, qvecs: dict[str, np.ndarray], rankings: dict[str, Any], filters: Any, allowed: Any
) -> list[int]:
    """iids whose untuned photo vector is (nearly) the query photo's, best first."""
    hits = rankings.get("image")
    if hits is None and "image" in qvecs and "image" in engine.vectors:
        hits = engine.vectors["image"].search(
            qvecs["image"][None], 5, filter=engine._parse_filter(filters), allowed=allowed
        )[0]
    if hits is None:
        return []
    scores = np.asarray(hits.scores)
    return [int(i) for i in np.asarray(hits.iids)[scores >= SAME_PHOTO]]
