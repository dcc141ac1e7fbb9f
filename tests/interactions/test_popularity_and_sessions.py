"""Popularity as a calibrated signal, and session recommendations weighed by recency (toy index)."""

from __future__ import annotations

import pytest

from prodsearch.errors import QueryError
from prodsearch.interactions.log import Interaction
from prodsearch.interactions.session import recency_weights, session_weights
from prodsearch.interactions.signals import popularity, popularity_values, write_popularity
from prodsearch.search.calibration import calibrate
from prodsearch.search.engine import Engine

# shoppers who search a category buy one product of it; the other signals cannot tell which
BOUGHT = {"shirt": "p12", "shoes": "p05", "bag": "p09"}
WORDS = ["", "buy", "cheap", "new", "best", "nice", "great", "cool"]


def _held_out() -> list[Interaction]:
    return [
        Interaction(pid, "purchase", 1000.0 + i, query=f"{w} {cat}".strip())
        for i, (w, (cat, pid)) in enumerate((w, c) for w in WORDS for c in BOUGHT.items())
    ]


def _calibrated_popularity_weight(index, embedder, popular: list[str]) -> tuple[float, list[str]]:
    history = [Interaction(pid, "click", float(t), query="x") for t in range(5) for pid in popular]
    write_popularity(index, popularity(history, half_life_days=7))
    with Engine.open(index, embedder=embedder) as engine:
        assert engine.popularity and "popularity" in engine.signal_rankings(text="shirt")
        cal = calibrate(engine, interactions=_held_out())
        assert cal is not None and cal["interaction_queries"]["text"] == len(WORDS) * len(BOUGHT)
        top = [engine.search(text=cat, k=1).results[0].id for cat in BOUGHT]
        return engine.fusion_weights("text")["popularity"], top


def test_popularity_that_predicts_purchases_gets_weight_and_reorders_results(tiny_index, fake_embedder):
    with Engine.open(tiny_index, embedder=fake_embedder) as engine:
        before = [engine.search(text=cat, k=1).results[0].id for cat in BOUGHT]
        assert engine.fusion_weights("text")["popularity"] == 0.0  # no calibration vouched for it
    weight, top = _calibrated_popularity_weight(tiny_index, fake_embedder, list(BOUGHT.values()))
    assert weight > 0

    def bought(ids):
        return sum(a == b for a, b in zip(ids, BOUGHT.values(), strict=True))

    assert bought(top) >= 2 > bought(before), (before, top)


def test_popularity_that_does_not_predict_relevance_gets_weight_zero(tiny_index, fake_embedder):
    weight, _ = _calibrated_popularity_weight(tiny_index, fake_embedder, ["p01", "p04", "p07", "p11"])
    assert weight == 0.0


def test_popularity_counts_decay_and_values_are_log_scaled():
    day = 86400.0
    events = [Interaction("a", "purchase", 10 * day), Interaction("b", "click", 10 * day)]
    events += [Interaction("b", "click", 3 * day)]  # one week older: counts half
    counts = popularity(events, half_life_days=7)
    assert counts == pytest.approx({"a": 4.0, "b": 1.5})
    assert popularity_values(counts) == pytest.approx({"a": 1.0, "b": 0.5693234419})  # log1p(1.5)/log1p(4)


def test_recency_weights_and_session_sides():
    assert recency_weights([0, 1, 2], 1.0) == [0.25, 0.5, 1.0]
    pos, neg = session_weights(
        [
            {"product_id": "a"},
            {"product_id": "b", "event": "clicked"},
            {"product_id": "a", "event": "disliked"},
        ],
        half_life=1.0,
    )
    assert pos == {"b": 0.5} and neg == {"a": 1.25}  # a's latest event puts it on the negative side
    with pytest.raises(QueryError, match="every event or for none"):
        session_weights([{"product_id": "a", "timestamp": 1}, {"product_id": "b"}])
    with pytest.raises(QueryError, match="unknown event 'liked'"):
        session_weights([{"product_id": "a", "event": "liked"}])


def test_recency_ranks_the_latest_interest_first_where_the_average_cannot(tiny_engine):
    # p03 is green, p02 blue; the only other green product is p10, the only other blue p09
    def top(**kw):
        return tiny_engine.recommend(by="image", k=2, **kw).results[0].id

    assert top(session=[{"product_id": "p03"}, {"product_id": "p02"}], half_life=0.5) == "p09"
    assert top(session=[{"product_id": "p02"}, {"product_id": "p03"}], half_life=0.5) == "p10"
    timed = [
        {"product_id": "p02", "timestamp": 0},
        {"product_id": "p03", "timestamp": "1970-01-01T00:10:00Z"},
    ]
    assert top(session=timed, half_life=60) == "p10"
    # the average of vectors does not know the order; a very long half-life is the average
    avg = [r.id for r in tiny_engine.recommend(["p02", "p03"], by="image", k=4).results]
    flat = tiny_engine.recommend(
        session=[{"product_id": "p02"}, {"product_id": "p03"}], half_life=1e9, by="image", k=4
    )
    assert [r.id for r in flat.results] == avg
    with pytest.raises(QueryError, match="at least one positive"):
        tiny_engine.recommend(session=[{"product_id": "p02", "event": "disliked"}])
