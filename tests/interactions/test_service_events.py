"""The service's opt-in interaction log: searches and POST /events appended in the log's schema."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from service_helpers import error_of, ids, make_settings

from prodsearch.interactions import read_interactions
from prodsearch.service.app import create_app


@pytest.fixture
def logged(tiny_engine, tmp_path):
    path = tmp_path / "logs" / "interactions.jsonl"
    with TestClient(create_app(tiny_engine, make_settings(interaction_log=path))) as client:
        yield client, path


def test_searches_and_clicks_are_appended_and_read_back_as_a_valid_log(logged, tiny_engine):
    client, path = logged
    shown = ids(client.post("/search", json={"text": "red shirt", "k": 3}))
    r = client.post(
        "/events", json={"product_id": shown[1], "event": "click", "query": "red shirt", "session_id": "s1"}
    )
    assert r.status_code == 200 and r.json() == {"logged": 1}
    client.post(
        "/events",
        json={"product_id": shown[1], "event": "purchase", "query": "red shirt", "timestamp": 1.7e9},
    )
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(x["product_id"], x["event"]) for x in lines] == [(p, "view") for p in shown] + [
        (shown[1], "click"),
        (shown[1], "purchase"),
    ]
    assert lines[3]["session_id"] == "s1" and lines[4]["timestamp"] == "2023-11-14T22:13:20.000Z"
    log = read_interactions(path, [p.id for p in tiny_engine.store.iter_products()])
    assert log.rejected == 0 and log.accepted == 5
    # a photo search is not logged (its photo is not kept), nor a later page
    client.post("/search", json={"text": "red shirt", "k": 3, "offset": 3})
    assert len(path.read_text().splitlines()) == 5


def test_concurrent_events_keep_every_line_whole(logged):
    client, path = logged

    def post(i):
        q = f"query {i} " + "x" * 150
        return client.post("/events", json={"product_id": "p01", "event": "view", "query": q}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(post, range(200))) == {200}
    lines = path.read_text().splitlines()
    assert len(lines) == 200
    assert sorted(int(json.loads(x)["query"].split()[1]) for x in lines) == list(range(200))


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"event": "click", "query": "x"}, "product_id"),
        ({"product_id": "p01", "event": "like", "query": "x"}, "event"),
        ({"product_id": "p01", "event": "click"}, "query"),
        ({"product_id": "p01", "event": "click", "query": "   "}, "blank"),
        ({"product_id": "nope", "event": "click", "query": "x"}, "unknown product id 'nope'"),
        ({"product_id": "p01", "query": "x", "timestamp": "soon"}, "timestamp"),
        ({"product_id": "p01", "query": "x", "timestamp": 4e9}, "future"),
        ({"product_id": "p01", "query": "x", "extra": 1}, "extra"),
        ({"product_id": "p01", "query": "x" * 201}, "max_text_chars"),
    ],
)
def test_bad_event_bodies_are_422_naming_the_field(logged, body, needle):
    client, path = logged
    err = error_of(client.post("/events", json=body), 422)
    assert needle in err["message"], err
    assert not path.exists() or path.read_text() == ""


def test_events_are_403_when_logging_is_off(tiny_engine):
    with TestClient(create_app(tiny_engine, make_settings())) as client:
        err = error_of(client.post("/events", json={"product_id": "p01", "query": "x"}), 403)
        assert "PRODSEARCH_INTERACTION_LOG" in err["message"]


def test_recommend_takes_a_session(logged, tiny_engine):
    client, _ = logged
    session = [
        {"product_id": "p01", "event": "viewed"},
        {"product_id": "p05", "event": "disliked"},
        {"product_id": "p04", "event": "clicked"},
    ]
    got = ids(client.post("/recommend", json={"session": session, "k": 4}))
    assert got == [r.id for r in tiny_engine.recommend(session=session, k=4).results]
    assert not {"p01", "p04", "p05"} & set(got)
    err = error_of(
        client.post("/recommend", json={"session": [{"product_id": "p05", "event": "disliked"}]}), 422
    )
    assert "positive" in err["message"]
    error_of(client.post("/recommend", json={"session": [{"product_id": "p01"}], "half_life": 0}), 422)
    # the existing positive / negative API is unchanged
    assert ids(client.post("/recommend", json={"positive": ["p04"], "k": 3}))
