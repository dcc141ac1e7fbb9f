"""Query encoding, one part of the search engine (:class:`prodsearch.search.engine.Engine`): a
text and/or photo query (with a negative term and the photo's share) -> one query vector per vector
kind the index can search (untuned text, untuned photo, an aligned space, a trained ``joint`` space)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from prodsearch.encoders.base import l2_normalize
from prodsearch.errors import QueryError

if TYPE_CHECKING:
    from prodsearch.search.engine import Engine


def encode_query(
    engine: Engine,
    text: str | None,
    image: Any,
    negative: str | None,
    image_weight: float,
    negative_weight: float,
    timings: dict[str, float],
    want: tuple[str, ...] = ("text", "image", "joint"),
) -> dict[str, np.ndarray]:
    """Return a query vector per vector kind that the query can reach (the trained space only
    when ``want`` uses it: it may cost a second forward pass)."""
    t = time.perf_counter()
    emb = engine.embedder
    q_text = emb.encode_text([text])[0] if text else None
    q_img = None
    if image is not None:
        if emb.image is None or "image" not in engine.vectors:
            raise QueryError("this index has no image encoder; image queries are not supported")
        q_img = emb.encode_images([image])[0]
    q_neg = emb.encode_text([negative])[0] if negative else None
    timings["encode"] = time.perf_counter() - t

    out: dict[str, np.ndarray] = {}
    if emb.joint is not None and "joint" in engine.vectors and "joint" in want:
        out["joint"] = joint_query(
            engine, q_text, q_img, text, image, negative, image_weight, negative_weight
        )
    if engine.aligned:
        parts = [(v, w) for v, w in ((q_text, 1.0 - image_weight), (q_img, image_weight)) if v is not None]
        if len(parts) == 1:
            q = parts[0][0]
        else:
            q = sum(w * v for v, w in parts)
        if q_neg is not None:
            q = q - negative_weight * q_neg  # "not leather": a negative query term, as in Marqo
        q = l2_normalize(q[None])[0]
        out = {kind: q for kind in engine.vectors}
    else:
        if q_text is not None and "text" in engine.vectors:
            q = q_text if q_neg is None else l2_normalize((q_text - negative_weight * q_neg)[None])[0]
            out["text"] = q
        if q_img is not None:
            out["image"] = q_img
    return out


def joint_query(
    engine: Engine,
    q_text: np.ndarray | None,
    q_img: np.ndarray | None,
    text: str | None,
    image: Any,
    negative: str | None,
    image_weight: float,
    negative_weight: float,
) -> np.ndarray:
    """The query in the trained model's space, from the untuned query features when the model is
    a head over the same encoders (no second forward pass), else through its own towers."""
    emb = engine.embedder
    joint = emb.joint

    def side(modality: str, base: np.ndarray | None, raw: Any) -> np.ndarray | None:
        if raw is None or (modality == "text" and not raw):
            return None
        v = emb.joint_from_base(modality, base[None], query=True) if base is not None else None
        if v is None and modality == "text":
            v = joint.encode_text([raw])
        elif v is None:
            v = joint.encode_image_queries([raw])
        return v[0]

    jt, ji = side("text", q_text, text), side("image", q_img, image)
    parts = [(v, w) for v, w in ((jt, 1.0 - image_weight), (ji, image_weight)) if v is not None]
    q = parts[0][0] if len(parts) == 1 else sum(w * v for v, w in parts)
    if negative:
        q = q - negative_weight * joint.encode_text([negative])[0]
    return l2_normalize(np.asarray(q, np.float32)[None])[0]
