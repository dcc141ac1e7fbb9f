"""Frozen-tower features for the fast path, computed once and cached on disk.

Text: every text variant of every product through the frozen text encoder. Image: every photo
through the frozen image encoder (which uses prodsearch's image feature cache when it has one,
so the index build and training share the work). A whole-array cache keyed by the encoder spec
and the exact inputs makes a re-run (``--resume``, a second config) start in seconds.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence

import numpy as np

from prodsearch.encoders.base import Encoder
from prodsearch.paths import atomic_write_bytes, cache_dir

log = logging.getLogger(__name__)


def _key(encoder: Encoder, items: Sequence[str]) -> str:
    h = hashlib.sha256(encoder.spec_hash().encode())
    for s in items:
        h.update(s.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:24]


def encode_cached(
    encoder: Encoder,
    items: Sequence[str],
    *,
    keys: Sequence[str] | None = None,
    batch_size: int = 128,
    progress: bool = False,
    use_cache: bool = True,
) -> np.ndarray:
    """``encoder.encode(items)`` as float32 ``(N, dim)``, cached under ``cache_dir()/train-features``.

    ``keys`` identify the inputs for the cache (default: the items themselves; pass image content
    hashes for photos so that moving a file does not invalidate the cache).
    """
    path = (
        cache_dir()
        / "train-features"
        / f"{encoder.name.replace('/', '_')}-{_key(encoder, keys or items)}.npy"
    )
    if use_cache and path.is_file():
        arr = np.load(path)
        if arr.shape[0] == len(items):
            log.info("loaded %d cached %s features from %s", len(items), encoder.modality, path)
            return arr
    # identical inputs (shared titles, attribute phrases, duplicate photos) are encoded once
    key_list = list(keys or items)
    first: dict[str, int] = {}
    inverse = np.asarray([first.setdefault(k, len(first)) for k in key_list], dtype=np.int64)
    uniq = [None] * len(first)
    for k, item in zip(key_list, items, strict=True):
        if uniq[first[k]] is None:
            uniq[first[k]] = item
    log.info(
        "encoding %d distinct of %d %s items with %s", len(uniq), len(items), encoder.modality, encoder.name
    )
    encode_paths = getattr(encoder, "encode_paths", None)
    if encode_paths is not None and keys is not None:
        # photos go through the image encoder's per-file feature cache, shared with `prodsearch index`
        uniq_keys = [None] * len(first)
        for k, i in first.items():
            uniq_keys[i] = k
        feats = encode_paths(uniq, uniq_keys, batch_size=batch_size, progress=progress)
    else:
        feats = encoder.encode(uniq, batch_size=batch_size, progress=progress)
    arr = np.asarray(feats, dtype=np.float32)[inverse]
    if use_cache:
        buf = io.BytesIO()
        np.save(buf, arr)
        atomic_write_bytes(path, buf.getvalue())
    return arr
