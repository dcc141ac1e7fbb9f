"""Photo + text queries with the photo as the anchor ("like this, but black"; issue 11, item 14).

Adding the text vector to the photo vector lets the text outweigh the photo: a red heel photo plus
"black" found black socks first. What a shopper means is "products that look like this one, among
those the one that is black", so the photo decides the candidate set and the text only re-ranks it:

1. the *anchor set*: the ``pool`` products whose photos are nearest to the query photo alone
   (within the filters; its size is calibrated per index with the fusion weights);
2. every signal of the query (the composed photo+text vector, the text vector, the keywords) is
   ranked within the anchor set only, and the rankings are fused as usual.

So every result looks like the photo, and among those the text's words and meaning decide the
order. Measured by ``bench/composed_bench.py`` (docs/benchmarks.md, "Composed queries").
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

#: Products in the anchor set (nearest photos) that the text re-ranks, unless the index's fusion
#: calibration chose another size (search/calibration.py tries :data:`POOLS` on held-out queries).
ANCHOR_POOL = 200
#: Anchor-set sizes the calibration tries: on a large catalog the 200 nearest photos of a red shoe
#: hold few shoes of another colour, so the text has nothing to pick.
POOLS = (100, 200, 500, 1000, 2000, 4000)


def anchor_pool(engine: Any) -> int:
    """The index's anchor-set size: the calibrated one, else :data:`ANCHOR_POOL`."""
    return int((engine.calibration or {}).get("anchor_pool") or ANCHOR_POOL)


def anchor_set(
    engine: Any, image: Any, allowed: np.ndarray | None, pool: int | None = None, q_img: Any = None
) -> np.ndarray:
    """iids of the ``pool`` products whose photo vectors are nearest the query photo's, (N,) int64;
    ``q_img``: the photo's vector when the caller has it already."""
    if q_img is None:
        q_img = engine.embedder.encode_images([image])[0]
    n = pool or anchor_pool(engine)
    hits = engine.vectors["image"].search(np.asarray(q_img, np.float32)[None], n, allowed=allowed)[0]
    return np.asarray(hits.iids, dtype=np.int64)


def anchored_rankings(
    engine: Any,
    text: str,
    image: Any,
    want: tuple[str, ...],
    qvecs: dict[str, np.ndarray],
    allowed: np.ndarray | None,
    depth: int,
    timings: dict[str, float],
    pool: int | None = None,
) -> dict[str, Any]:
    """The engine's per-signal rankings of a photo+text query, each restricted to the anchor set.

    ``want``: the signals of the query's mode; ``qvecs``: the engine's query vectors per vector kind
    (the composed photo+text vector in an aligned space); ``allowed``: iids passing the filters;
    ``pool``: the anchor set's size (default :func:`anchor_pool`).
    """
    t = time.perf_counter()
    # the query's photo vector is the photo alone unless the space mixes photo and text (aligned)
    photo = None if engine.aligned else qvecs.get("image")
    anchors = anchor_set(engine, image, allowed, pool, q_img=photo)
    timings["anchor"] = time.perf_counter() - t
    if not len(anchors):  # the filters leave no product: an empty answer, not an error
        from prodsearch.index.types import Hits

        return {"image": Hits.empty()}
    rankings: dict[str, Any] = {}
    if "lexical" in want and text:
        t = time.perf_counter()
        rankings["lexical"] = engine.lexical.search(text, len(anchors), allowed=anchors)
        timings["lexical"] = time.perf_counter() - t
    t = time.perf_counter()
    for kind in ("text", "image", "joint"):
        if kind in want and kind in qvecs:
            rankings[kind] = engine.vectors[kind].search(qvecs[kind][None], len(anchors), allowed=anchors)[0]
    timings["anchor_ann"] = time.perf_counter() - t
    return {s: h for s, h in rankings.items() if len(h.iids)}
