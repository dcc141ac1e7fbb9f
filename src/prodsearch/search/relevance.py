"""Weak-match signal: does a text query have any close match in the catalog? (issue 11, item 11)

Rank fusion always returns k results, so "qwertyuiop zxcv" used to get 24 confident-looking hits.
A query is a *weak match* when every signal is weak:

* lexical: no word of the query occurs in any product's text (BM25 finds nothing);
* dense: the closest product text is no closer to the query than the closest product is to random
  letter strings. That cutoff is calibrated per index and encoder (like Marqo's relevance cutoff,
  but from the index itself): :func:`calibrate` encodes :data:`PROBES` seeded gibberish queries and
  takes the highest top-1 similarity any of them reaches.

The cutoff is cached in memory per engine and on disk under ``cache_dir()/relevance`` keyed by the
index folder, its manifest time stamp and the text encoder spec, so it is computed once per index
build (about 50 query encodings).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import weakref
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from prodsearch.paths import atomic_write_text, cache_dir

log = logging.getLogger(__name__)

PROBES = 48
_CONSONANTS = "bcdfghjklmnpqrstvwxz"
_VOWELS = "aeiouy"
_CUTOFFS: weakref.WeakKeyDictionary[Any, float | None] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class MatchStrength:
    """``weak``: no signal found a close match; ``reason``: one line for people; the numbers behind it."""

    weak: bool
    reason: str
    lexical_hits: bool | None = None
    best_similarity: float | None = None
    cutoff: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gibberish_queries(n: int = PROBES, seed: int = 0) -> list[str]:
    """``n`` seeded nonsense queries of 1-3 letter-string words ("qwzk bnolt"), some pronounceable."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = []
        for _ in range(rng.randint(1, 3)):
            length = rng.randint(4, 10)
            if i % 2:  # pronounceable nonsense: consonant-vowel pairs
                words.append(
                    "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(length // 2))
                )
            else:
                words.append("".join(rng.choice(_CONSONANTS + _VOWELS) for _ in range(length)))
        out.append(" ".join(words))
    return out


def _top1(engine: Any, vectors: np.ndarray) -> np.ndarray:
    hits = engine.vectors["text"].search(np.asarray(vectors, dtype=np.float32), 1)
    return np.array([float(h.scores[0]) if len(h.scores) else -1.0 for h in hits], dtype=np.float64)


def _cache_file(engine: Any) -> Any:
    spec = json.dumps(engine.manifest.embedder, sort_keys=True, default=str)
    key = hashlib.sha256(
        f"{engine.root.resolve()}|{engine.manifest.updated_at}|{len(engine.vectors['text'])}|{spec}".encode()
    ).hexdigest()[:20]
    return cache_dir() / "relevance" / f"{key}.json"


def calibrate(engine: Any, *, probes: int = PROBES, seed: int = 0) -> float | None:
    """The dense cutoff of ``engine``'s text vectors: the best top-1 similarity of gibberish probes.

    None when the index has no text vectors. Cached (memory and disk), see the module doc.
    """
    if engine in _CUTOFFS:
        return _CUTOFFS[engine]
    if "text" not in engine.vectors or len(engine.vectors["text"]) == 0:
        _CUTOFFS[engine] = None
        return None
    path = _cache_file(engine)
    try:
        cutoff = float(json.loads(path.read_text())["cutoff"])
    except (OSError, ValueError, KeyError):
        queries = gibberish_queries(probes, seed)
        sims = _top1(engine, engine.embedder.encode_text(queries))
        cutoff = float(sims.max())
        atomic_write_text(path, json.dumps({"cutoff": cutoff, "probes": probes, "seed": seed}))
        log.info(
            "relevance cutoff of %s: %.4f (max top-1 similarity of %d gibberish queries)",
            engine.root,
            cutoff,
            probes,
        )
    _CUTOFFS[engine] = cutoff
    return cutoff


def assess(engine: Any, text: str | None, *, mode: str = "hybrid", has_image: bool = False) -> MatchStrength:
    """Whether the text query ``text`` has a close match in ``engine``'s index (see the module doc).

    Photo queries always have a nearest product photo; they are not judged (``weak=False``).
    ``mode="lexical"`` judges by keywords only and loads no model.
    """
    if has_image or not text or not text.strip():
        return MatchStrength(False, "photo or empty query: not judged")
    lexical = len(engine.lexical.search(text, 1).iids) > 0
    if lexical:
        return MatchStrength(False, "some query words occur in the catalog", lexical_hits=True)
    if mode == "lexical" or "text" not in engine.vectors:
        return MatchStrength(True, "no close match: no query word occurs in the catalog", lexical_hits=False)
    cutoff = calibrate(engine)
    best = float(_top1(engine, engine.embedder.encode_text([text]))[0])
    if cutoff is not None and best <= cutoff:
        return MatchStrength(
            True,
            f"no close match: no query word occurs in the catalog and the closest product is no closer "
            f"than random letters are ({best:.3f} <= {cutoff:.3f})",
            lexical_hits=False, best_similarity=best, cutoff=cutoff,
        )  # fmt: skip
    return MatchStrength(
        False, "close in meaning though no query word occurs in the catalog",
        lexical_hits=False, best_similarity=best, cutoff=cutoff,
    )  # fmt: skip
