"""Appending events to an interaction log (the service's opt-in logging, ``PRODSEARCH_INTERACTION_LOG``).

Each event is one JSON line in the schema :func:`prodsearch.interactions.read_interactions` reads,
written with a single ``write`` on a file opened ``O_APPEND``: the kernel appends each line whole,
so concurrent requests (threads here, or several service processes on one file) never interleave
parts of lines, and a crash loses at most the line being written.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from prodsearch.interactions.log import EVENTS, Interaction

#: Results of one search logged as "view" events (what a shopper saw first).
LOGGED_VIEWS = 10


class InteractionLogger:
    """Append-only JSONL writer of :class:`Interaction` s; thread-safe; ``close`` when done."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def append(self, events: Sequence[Interaction]) -> int:
        """Append ``events`` (each one line, written whole); returns how many."""
        if not events:
            return 0
        data = "".join(json.dumps(e.to_record(), ensure_ascii=False) + "\n" for e in events).encode()
        with self._lock:
            os.write(self._fd, data)  # one O_APPEND write per call: lines stay whole
        return len(events)

    def event(
        self,
        product_id: str,
        event: str,
        *,
        query: str | None = None,
        query_image: str | None = None,
        session_id: str | None = None,
        timestamp: float | None = None,
    ) -> Interaction:
        """Append one event (time: now unless given) and return it."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; expected one of {', '.join(EVENTS)}")
        ev = Interaction(
            product_id, event, time.time() if timestamp is None else timestamp, query, query_image, session_id
        )
        self.append([ev])
        return ev

    def search(self, query: str, product_ids: Sequence[str], *, session_id: str | None = None) -> int:
        """A text search's first :data:`LOGGED_VIEWS` results as "view" events of its query."""
        now = time.time()
        return self.append(
            [Interaction(pid, "view", now, query, None, session_id) for pid in product_ids[:LOGGED_VIEWS]]
        )

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
