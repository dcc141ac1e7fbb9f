"""Learning ranking from a log (issue 12, item 4c): popularity stored with an index and the fusion
calibrated on the log's held-out window, so popularity (and a model trained on shoppers' clicks)
counts exactly as much as it helps shoppers' own later queries (weight 0 when it does not)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prodsearch.interactions.log import InteractionLog, read_interactions, split_by_time
from prodsearch.interactions.signals import DEFAULT_HALF_LIFE_DAYS, popularity, write_popularity

log = logging.getLogger(__name__)


def learn_ranking(
    index: str | Path,
    interactions: str | Path | InteractionLog,
    *,
    holdout: float = 0.2,
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS,
    with_popularity: bool = True,
    embedder: Any = None,
) -> dict[str, Any] | None:
    """Calibrate ``index``'s fusion with the log's later ``holdout`` window joining the validation
    queries, popularity (when ``with_popularity``) counted from the earlier window only, so the
    calibration never sees counts of the events it is judged on; then store the popularity of the
    whole log, what search uses from now on. Returns the calibration (``None``: too few queries)."""
    from prodsearch.search.calibration import calibrate
    from prodsearch.search.engine import Engine

    index = Path(index)
    with Engine.open(index, embedder=embedder) as engine:
        ids = [p.id for p in engine.store.iter_products()]
    events = (
        interactions if isinstance(interactions, InteractionLog) else read_interactions(interactions, ids)
    )
    earlier, later = split_by_time(events, holdout)
    if with_popularity:
        write_popularity(
            index, popularity(earlier.events, half_life_days=half_life_days), source=earlier.source
        )
    with Engine.open(index, embedder=embedder) as engine:
        cal = calibrate(engine, interactions=later.events)
    if with_popularity:
        now = max((e.time for e in events.events), default=None)
        write_popularity(
            index, popularity(events.events, now=now, half_life_days=half_life_days),
            source=events.source, half_life_days=half_life_days,
        )  # fmt: skip
    return cal
