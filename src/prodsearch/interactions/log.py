"""Interaction logs: what shoppers searched and did, read and validated like a catalog.

One row per event: the query (``query`` text and/or ``query_image``: a photo path or URL), the
``product_id`` it led to, the ``event`` (view / click / add_to_cart / purchase), its ``timestamp``
(ISO 8601, or epoch seconds / milliseconds) and an optional ``session_id``. The file is read by the
catalog's own table reader (CSV/TSV, JSON Lines, JSON, Parquet: :func:`prodsearch.catalog.tables.read_table`).

Every bad row is reported with its row number, field and what was expected (a
:class:`~prodsearch.catalog.schema.RowProblem`, reason ``"kind: details"`` as in catalog validation)
and the rest is used; ``strict`` raises on the first one instead. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from prodsearch.catalog.fetch import is_url
from prodsearch.catalog.schema import RowProblem
from prodsearch.catalog.tables import read_table
from prodsearch.catalog.validate import problem_kind
from prodsearch.errors import CatalogError
from prodsearch.paths import atomic_write_text

log = logging.getLogger(__name__)

#: Event types, weakest to strongest signal of relevance.
EVENTS = ("view", "click", "add_to_cart", "purchase")
#: Column names of the log, and the other spellings accepted for them.
COLUMNS = {
    "query": ("query", "query_text", "q"),
    "query_image": ("query_image", "query_photo", "photo", "image"),
    "product_id": ("product_id", "product", "id"),
    "event": ("event", "event_type", "action"),
    "timestamp": ("timestamp", "ts", "time"),
    "session_id": ("session_id", "session"),
}
#: A timestamp this far past the reading clock is a "future timestamp" (clock skew allowance).
FUTURE_SLACK_S = 300.0
_EVENT_ALIASES = {"add-to-cart": "add_to_cart", "addtocart": "add_to_cart", "cart": "add_to_cart"}


class InteractionError(CatalogError):
    """An interaction log file or row is invalid (a :class:`CatalogError`, so a ``ValueError``)."""


@dataclass(frozen=True)
class Interaction:
    """One validated event. ``time``: seconds since the epoch (UTC); ``row``: 1-based row in the file."""

    product_id: str
    event: str
    time: float
    query: str | None = None
    query_image: str | None = None  # absolute path (relative cells resolve in the log's folder) or URL
    session_id: str | None = None
    row: int | None = None

    @property
    def query_kind(self) -> str:
        """``"text"``, ``"image"`` or ``"text+image"``."""
        if self.query and self.query_image:
            return "text+image"
        return "text" if self.query else "image"

    def to_record(self) -> dict[str, object]:
        """The log schema (one JSONL line of :func:`append_event`)."""
        rec: dict[str, object] = {
            "query": self.query,
            "query_image": self.query_image,
            "product_id": self.product_id,
            "event": self.event,
            "timestamp": iso(self.time),
            "session_id": self.session_id,
        }
        return {k: v for k, v in rec.items() if v is not None}


@dataclass
class InteractionLog:
    """Accepted events in time order (ties keep file order) and the rejected rows."""

    events: list[Interaction]
    problems: list[RowProblem] = field(default_factory=list)
    source: str = ""
    rows: int = 0

    def __len__(self) -> int:
        return len(self.events)

    @property
    def accepted(self) -> int:
        return len(self.events)

    @property
    def rejected(self) -> int:
        return len(self.problems)

    def by_reason(self) -> dict[str, int]:
        """Rejected rows per problem kind, most frequent first."""
        return dict(Counter(problem_kind(p.reason) for p in self.problems).most_common())

    def summary(self) -> str:
        """``"log.jsonl: 120 rows, 117 ok, 3 bad (2 unknown product id, 1 unknown event)"``."""
        bad = ", ".join(f"{n} {k}" for k, n in self.by_reason().items())
        return f"{self.source}: {self.rows} rows, {self.accepted} ok, {self.rejected} bad" + (
            f" ({bad})" if bad else ""
        )

    def report(self) -> dict[str, object]:
        """Machine-readable summary (as the catalog's problem report)."""
        return {
            "source": self.source,
            "rows": self.rows,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "by_kind": self.by_reason(),
            "problems": [p.to_dict() for p in self.problems],
        }

    def write_report(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_text(path, json.dumps(self.report(), indent=2, ensure_ascii=False) + "\n")
        return path


def iso(t: float) -> str:
    """Epoch seconds -> ISO 8601 UTC with a ``Z`` (millisecond precision)."""
    return (
        datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def parse_timestamp(value: str) -> float:
    """ISO 8601 (naive = UTC, ``Z`` accepted) or epoch seconds (milliseconds when > 1e11) -> epoch s.

    Raises ``ValueError`` naming what was expected.
    """
    s = value.strip()
    try:
        x = float(s)
    except ValueError:
        try:
            dt = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
        except ValueError:
            raise ValueError(
                f"{value!r} is neither ISO 8601 (2026-12-02T09:30:00Z) nor epoch seconds"
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    if not math.isfinite(x) or x < 0:
        raise ValueError(f"{value!r} is not a non-negative epoch time")
    return x / 1000.0 if x > 1e11 else x


def normalize_event(value: str) -> str | None:
    e = value.strip().lower().replace(" ", "_")
    e = _EVENT_ALIASES.get(e, e)
    return e if e in EVENTS else None


def read_interactions(
    path: str | Path,
    product_ids: Collection[str] | None = None,
    *,
    strict: bool = False,
    now: float | None = None,
    check_photos: bool = True,
    encoding: str | None = None,
) -> InteractionLog:
    """Read and validate an interaction log (``.jsonl``/``.csv``/``.tsv``/``.json``/``.parquet``).

    Args:
        path: the log file; relative ``query_image`` paths resolve in its folder.
        product_ids: the catalog's (or index's) product ids; events naming another id are rejected
            ("unknown product id"). ``None`` skips that check.
        strict: raise :class:`InteractionError` naming the first bad row instead of skipping bad rows.
        now: the clock (epoch s) that a timestamp may not pass by more than :data:`FUTURE_SLACK_S`.
        check_photos: reject rows whose local query photo does not exist.

    Rows are rejected (one :class:`RowProblem` each, with the field and the reason) for: a missing or
    unknown product id, a missing or unknown event, a missing, unparsable or future timestamp, neither
    query text nor photo, a query photo that is not found, and an exact duplicate of an earlier row.
    """
    path = Path(path)
    if not path.is_file():
        raise InteractionError(f"{path}: interaction log not found")
    try:
        table = read_table(path, encoding=encoding)
    except CatalogError as err:
        raise InteractionError(str(err).replace("catalog", "interaction log")) from None
    cols = _resolve_columns(path, table.columns)
    known = set(product_ids) if product_ids is not None else None
    now = now if now is not None else datetime.now(timezone.utc).timestamp()
    root = path.absolute().parent
    problems = list(table.problems)
    events: list[Interaction] = []
    seen: dict[tuple, int] = {}
    for cells, n in zip(table.rows, table.row_numbers, strict=True):

        def cell(name: str, cells: list[str] = cells) -> str:
            i = cols.get(name)
            return cells[i].strip() if i is not None else ""

        ev, problem = _row(cell, n, cols, known, now, root, check_photos)
        if problem is None:
            key = (ev.query, ev.query_image, ev.product_id, ev.event, ev.time, ev.session_id)
            if key in seen:
                problem = RowProblem(n, ev.product_id, None, f"duplicate event: same as row {seen[key]}")
            else:
                seen[key] = n
        if problem is not None:
            if strict:
                raise InteractionError(f"{path}: {problem}")
            problems.append(problem)
            continue
        events.append(ev)
    if strict and problems:
        raise InteractionError(f"{path}: {problems[0]}")
    events.sort(key=lambda e: e.time)  # stable: ties keep file order
    problems.sort(key=lambda p: p.row or 0)
    result = InteractionLog(events, problems, str(path), table.total_rows)
    log.info("%s", result.summary())
    if problems:
        log.warning("%s: first bad rows: %s", path, "; ".join(str(p) for p in problems[:3]))
    return result


def _resolve_columns(path: Path, columns: Sequence[str]) -> dict[str, int]:
    lower = {c.strip().lower(): i for i, c in enumerate(columns)}
    out: dict[str, int] = {}
    for name, spellings in COLUMNS.items():
        for s in spellings:
            if s in lower:
                out[name] = lower[s]
                break
    missing = [c for c in ("product_id", "event", "timestamp") if c not in out]
    if not ("query" in out or "query_image" in out):
        missing.append("query or query_image")
    if missing:
        raise InteractionError(
            f"{path}: interaction log lacks column(s) {missing}; found {list(columns)}; expected "
            f"{list(COLUMNS)} (query and/or query_image, session_id optional)"
        )
    return out


def _row(cell, n, cols, known, now, root, check_photos) -> tuple[Interaction | None, RowProblem | None]:
    pid = cell("product_id")
    if not pid:
        return None, RowProblem(n, None, "product_id", "missing product id")
    if known is not None and pid not in known:
        return None, RowProblem(n, pid, "product_id", f"unknown product id: {pid!r} is not in the catalog")
    raw_event = cell("event")
    event = normalize_event(raw_event)
    if event is None:
        return None, RowProblem(
            n, pid, "event", f"unknown event: {raw_event!r}; expected one of {', '.join(EVENTS)}"
        )
    raw_ts = cell("timestamp")
    if not raw_ts:
        return None, RowProblem(
            n, pid, "timestamp", "unparsable timestamp: empty; expected ISO 8601 or epoch"
        )
    try:
        t = parse_timestamp(raw_ts)
    except ValueError as err:
        return None, RowProblem(n, pid, "timestamp", f"unparsable timestamp: {err}")
    if t > now + FUTURE_SLACK_S:
        return None, RowProblem(
            n, pid, "timestamp", f"future timestamp: {raw_ts!r} is after the time of reading ({iso(now)})"
        )
    query, photo = cell("query") or None, cell("query_image") or None
    if not query and not photo:
        return None, RowProblem(n, pid, "query", "no query: neither query text nor query_image given")
    if photo and not is_url(photo):
        resolved = Path(os.path.expanduser(photo))
        resolved = resolved if resolved.is_absolute() else root / resolved
        if check_photos and not resolved.is_file():
            return None, RowProblem(n, pid, "query_image", f"query photo not found: {photo!r} ({resolved})")
        photo = str(resolved)
    session = cell("session_id") or None
    return Interaction(pid, event, t, query, photo, session, n), None


def split_by_time(log: InteractionLog | Sequence[Interaction], holdout_fraction: float = 0.2):
    """``(earlier, later)``: the last ``holdout_fraction`` of the events by time is held out for
    evaluation; events at the cut's timestamp all go to the held-out side, so no event of the held-out
    window is older than any training event. Both are :class:`InteractionLog` s."""
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    events = sorted(log.events if isinstance(log, InteractionLog) else log, key=lambda e: e.time)
    source = log.source if isinstance(log, InteractionLog) else ""
    if not events:
        return InteractionLog([], source=source), InteractionLog([], source=source)
    cut_at = min(len(events) - 1, int(round(len(events) * (1.0 - holdout_fraction))))
    cut_time = events[cut_at].time
    cut = next(i for i, e in enumerate(events) if e.time >= cut_time)
    return (
        InteractionLog(events[:cut], source=f"{source} (before {iso(cut_time)})", rows=cut),
        InteractionLog(events[cut:], source=f"{source} (from {iso(cut_time)})", rows=len(events) - cut),
    )
