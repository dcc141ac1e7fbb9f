"""Shoppers' held-out events as an evaluation protocol (issue 12, item 4b).

``prodsearch evaluate INDEX --out R --interactions LOG``: the log is validated against the index's
products and split by time (:func:`prodsearch.interactions.split_by_time`); each distinct query of the
later window is a query whose relevant products are the ones shoppers acted on, graded by their
strongest event (view 1, click 2, add to cart 3, purchase 4). Text queries form the ``interactions``
protocol, photo queries ``interactions_photo``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from prodsearch.evaluation.protocols import ProtocolSkipped, QuerySet
from prodsearch.evaluation.qrels import ExplicitQrels, Judgement
from prodsearch.interactions.log import Interaction
from prodsearch.interactions.signals import judged_queries

#: Protocol name -> query kind of the evaluation systems.
PROTOCOLS = {"interactions": "text", "interactions_photo": "image"}
METRICS = ["hit@1", "hit@10", "mrr", "ndcg@10", "recall@10"]


def interaction_queries(
    ids: Sequence[str],
    events: Sequence[Interaction],
    protocol: str,
    *,
    max_queries: int = 2000,
    seed: int = 0,
) -> QuerySet:
    """The protocol's queries over the corpus ``ids`` (positions), graded by event; at most
    ``max_queries`` (a seeded sample, in first-seen order). Raises :class:`ProtocolSkipped` without any."""
    kind = PROTOCOLS[protocol]
    if not events:
        raise ProtocolSkipped("no held-out interaction events (pass --interactions LOG)")
    pos = {pid: i for i, pid in enumerate(ids)}
    queries, judgements, source = [], [], []
    for jq in judged_queries(events):
        if jq.kind != kind:
            continue
        grades = {pos[p]: g for p, g in jq.grades.items() if p in pos}
        if grades:
            queries.append(jq.query)
            judgements.append(grades)
            source.append(max(grades, key=lambda p: (grades[p], -p)))
    if not queries:
        what = "text" if kind == "text" else "photo"
        raise ProtocolSkipped(f"the held-out interaction window has no {what} queries of indexed products")
    keep = np.arange(len(queries))
    if len(queries) > max_queries:
        keep = np.sort(np.random.default_rng(seed).choice(len(queries), max_queries, replace=False))
    qrels = ExplicitQrels([judgements[i] for i in keep], len(ids))
    return QuerySet(
        protocol=protocol,
        kind=kind,
        queries=[queries[i] for i in keep],
        source=np.asarray([source[i] for i in keep], dtype=np.int64),
        judgements=[Judgement(qrels, METRICS, rel_level=1, curve=True)],
        info={"held_out_events": len(events), "graded": "view 1, click 2, add_to_cart 3, purchase 4"},
        labels=[queries[i] if kind == "text" else queries[i].rsplit("/", 1)[-1] for i in keep],
    )


def held_out_events(log_path, product_ids: Sequence[str], holdout: float = 0.2) -> list[Interaction]:
    """The later ``holdout`` window of a validated log (bad rows reported in the log, not used)."""
    from prodsearch.interactions.log import read_interactions, split_by_time

    _, later = split_by_time(read_interactions(log_path, product_ids), holdout)
    return later.events
