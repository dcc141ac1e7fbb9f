"""What an interaction log teaches: graded (query -> product) pairs for training and judgments for
evaluation, and product popularity with time decay. Pure functions over :class:`Interaction` s."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from prodsearch.errors import ConfigError
from prodsearch.interactions.log import EVENTS, Interaction
from prodsearch.paths import atomic_write_text

#: Training weight of each event (a purchase says more than a view); configurable per call.
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {"view": 0.25, "click": 1.0, "add_to_cart": 2.0, "purchase": 4.0}
#: Relevance grade of each event in the held-out judgments (the strongest event of a pair counts).
EVENT_GRADES: dict[str, int] = {e: i + 1 for i, e in enumerate(EVENTS)}
#: Half-life of a popularity count, in days.
DEFAULT_HALF_LIFE_DAYS = 14.0
POPULARITY_FILE = "popularity.json"


@dataclass(frozen=True)
class QueryPair:
    """One (query -> product) training pair: ``query`` text or ``query_image`` photo (exactly one),
    the product and its weight (the strongest event's, :data:`DEFAULT_EVENT_WEIGHTS`)."""

    product_id: str
    weight: float
    query: str | None = None
    query_image: str | None = None

    @property
    def kind(self) -> str:
        return "image" if self.query_image else "text"


def check_event_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    """Defaults overridden by ``weights``; unknown events or negative weights raise :class:`ConfigError`."""
    out = dict(DEFAULT_EVENT_WEIGHTS)
    for e, w in (weights or {}).items():
        if e not in EVENTS:
            raise ConfigError(f"event weight for unknown event {e!r}; events are {', '.join(EVENTS)}")
        if not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"event weight for {e!r} must be a finite number >= 0, got {w!r}")
        out[e] = float(w)
    return out


def graded_pairs(
    events: Iterable[Interaction], weights: Mapping[str, float] | None = None
) -> list[QueryPair]:
    """One pair per distinct (query, product): text queries -> product, photo queries -> product (a
    query with both gives one pair of each); weight = the strongest event's weight. Zero-weight
    events give no pair. Order: first occurrence in ``events``."""
    w = check_event_weights(weights)
    best: dict[tuple[str, str, str], float] = {}
    for e in events:
        if w[e.event] <= 0:
            continue
        for kind, q in (("text", e.query), ("image", e.query_image)):
            if q:
                key = (kind, q if kind == "image" else " ".join(q.lower().split()), e.product_id)
                best[key] = max(best.get(key, 0.0), w[e.event])
    return [
        QueryPair(pid, wt, query=q if kind == "text" else None, query_image=q if kind == "image" else None)
        for (kind, q, pid), wt in best.items()
    ]


@dataclass
class JudgedQuery:
    """A held-out query and its graded products (``{product_id: grade}``, grade >= 1)."""

    kind: str  # "text" or "image"
    query: str  # the text, or the photo's path/URL
    grades: dict[str, int]


def judged_queries(events: Iterable[Interaction], *, min_grade: int = 1) -> list[JudgedQuery]:
    """Graded judgments per distinct query of ``events`` (the held-out window): each product the query
    led to, graded by its strongest event (:data:`EVENT_GRADES`: view 1 ... purchase 4); products
    below ``min_grade`` are left out. Order: first occurrence."""
    out: dict[tuple[str, str], JudgedQuery] = {}
    for e in events:
        g = EVENT_GRADES[e.event]
        if g < min_grade:
            continue
        for kind, q in (("text", e.query), ("image", e.query_image)):
            if q:
                key = (kind, " ".join(q.lower().split()) if kind == "text" else q)
                jq = out.setdefault(key, JudgedQuery(kind, q, {}))
                jq.grades[e.product_id] = max(jq.grades.get(e.product_id, 0), g)
    return list(out.values())


def popularity(
    events: Iterable[Interaction],
    *,
    now: float | None = None,
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS,
    weights: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Decayed, event-weighted counts per product: ``sum w(event) * 0.5 ** (age / half_life)``, with
    age measured back from ``now`` (default: the newest event)."""
    if not half_life_days > 0:
        raise ConfigError(f"half_life_days must be > 0, got {half_life_days}")
    events = list(events)
    w = check_event_weights(weights)
    if not events:
        return {}
    now = max(e.time for e in events) if now is None else now
    hl = half_life_days * 86400.0
    out: dict[str, float] = {}
    for e in events:
        out[e.product_id] = out.get(e.product_id, 0.0) + w[e.event] * 0.5 ** (max(0.0, now - e.time) / hl)
    return out


def popularity_values(counts: Mapping[str, float]) -> dict[str, float]:
    """Counts -> the signal's value in [0, 1]: ``log1p(count) / log1p(max count)`` (a best seller does
    not drown everything else; the same scale for every index)."""
    top = max(counts.values(), default=0.0)
    if top <= 0:
        return {}
    d = math.log1p(top)
    return {pid: math.log1p(c) / d for pid, c in counts.items() if c > 0}


def write_popularity(
    index: str | Path, counts: Mapping[str, float], *, source: str = "", half_life_days: float | None = None
) -> Path:
    """Store popularity with the index (``popularity.json``, written atomically: a reader sees the old
    file or the new one). The engine reads it on open as its ``popularity`` signal."""
    path = Path(index) / POPULARITY_FILE
    doc = {
        "format": 1,
        "source": source,
        "half_life_days": half_life_days,
        "values": popularity_values(counts),
        "counts": {k: round(v, 6) for k, v in counts.items()},
    }
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path


def read_popularity(index: str | Path) -> dict[str, float]:
    """The stored signal values ``{product_id: value in (0, 1]}``; empty when the index has none."""
    path = Path(index) / POPULARITY_FILE
    if not path.is_file():
        return {}
    return {str(k): float(v) for k, v in json.loads(path.read_text()).get("values", {}).items()}
