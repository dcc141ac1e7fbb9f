"""Learning from shoppers (issue 12, items 4-5): interaction logs validated like a catalog, a time
split, graded training pairs, held-out judgments, a popularity signal and session recommendations."""

from __future__ import annotations

from prodsearch.interactions.log import (
    EVENTS,
    Interaction,
    InteractionLog,
    read_interactions,
    split_by_time,
)

__all__ = ["EVENTS", "Interaction", "InteractionLog", "read_interactions", "split_by_time"]
