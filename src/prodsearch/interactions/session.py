"""A shopper's session as recommendation input: recent events weighed by recency (issue 12, item 5).

The average-of-vectors recommender (Qdrant's ``average_vector``) treats the first product a shopper
looked at like the last one; a session drifts ("shoes" -> "running shoes" -> "trail running shoes"),
so each event's vector is weighed by ``0.5 ** (age / half_life)``: exponential decay, the newest
event weighing 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prodsearch.errors import QueryError
from prodsearch.interactions.log import parse_timestamp

#: Session events and whether they say "more like this" (True) or "less like this" (False).
POLARITY = {
    "viewed": True, "clicked": True, "disliked": False,
    "view": True, "click": True, "add_to_cart": True, "purchase": True, "dislike": False,
}  # fmt: skip
#: Default half-life when every event has a timestamp (seconds) ...
HALF_LIFE_S = 600.0
#: ... and when they come only in order (events).
HALF_LIFE_EVENTS = 3.0


@dataclass(frozen=True)
class SessionEvent:
    """One event of the session: the product, what the shopper did, when (epoch s; None: order only)."""

    product_id: str
    event: str = "viewed"
    time: float | None = None

    @classmethod
    def coerce(cls, value: Any, position: int) -> SessionEvent:
        """From a :class:`SessionEvent` or a dict ``{"product_id", "event"?, "timestamp"?}``."""
        if isinstance(value, SessionEvent):
            ev = value
        elif isinstance(value, Mapping):
            ts = value.get("timestamp", value.get("time"))
            try:
                t = (
                    None
                    if ts is None
                    else (float(ts) if isinstance(ts, (int, float)) else parse_timestamp(str(ts)))
                )
            except ValueError as err:
                raise QueryError(f"session event {position}: timestamp {err}") from None
            ev = cls(str(value.get("product_id", "")), str(value.get("event", "viewed")), t)
        else:
            raise QueryError(f"session event {position}: expected an object with product_id, got {value!r}")
        if not ev.product_id:
            raise QueryError(f"session event {position}: product_id is missing")
        if ev.event not in POLARITY:
            raise QueryError(
                f"session event {position}: unknown event {ev.event!r}; expected viewed, clicked or disliked"
            )
        return ev


def recency_weights(times: Sequence[float], half_life: float) -> list[float]:
    """``0.5 ** ((latest - t) / half_life)`` per time (the latest weighs 1)."""
    if not half_life > 0:
        raise QueryError(f"half_life must be > 0, got {half_life}")
    if not times:
        return []
    latest = max(times)
    return [0.5 ** (max(0.0, latest - t) / half_life) for t in times]


def session_weights(
    events: Sequence[Any], *, half_life: float | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """``(positive, negative)``: product id -> summed recency weight of its events. Ages are seconds
    before the latest event when every event has a timestamp, else positions (events given oldest
    first); a product's latest event decides which side it is on."""
    evs = [SessionEvent.coerce(e, i) for i, e in enumerate(events)]
    if not evs:
        return {}, {}
    timed = [e.time is not None for e in evs]
    if any(timed) and not all(timed):
        raise QueryError(
            "session events: give a timestamp for every event or for none (then their order counts)"
        )
    if all(timed):
        times = [float(e.time) for e in evs]  # type: ignore[arg-type]
        hl = HALF_LIFE_S if half_life is None else half_life
    else:
        times = [float(i) for i in range(len(evs))]
        hl = HALF_LIFE_EVENTS if half_life is None else half_life
    weights = recency_weights(times, hl)
    latest: dict[str, tuple[float, int]] = {}
    for i, (e, t) in enumerate(zip(evs, times, strict=True)):
        if e.product_id not in latest or (t, i) >= latest[e.product_id]:
            latest[e.product_id] = (t, i)
    pos: dict[str, float] = {}
    neg: dict[str, float] = {}
    for e, w in zip(evs, weights, strict=True):
        side = pos if POLARITY[evs[latest[e.product_id][1]].event] else neg
        side[e.product_id] = side.get(e.product_id, 0.0) + w
    return pos, neg
