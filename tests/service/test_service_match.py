"""The API's weak-match signal and the keyword filters over HTTP (issue 11, items 5 and 11)."""

from __future__ import annotations

import pytest
from service_helpers import b64, ids

from prodsearch.search.relevance import assess


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRODSEARCH_CACHE", str(tmp_path / "cache"))


def test_match_is_the_engine_verdict(client, tiny_engine):
    for text, mode in [
        ("waterproof jacket", "hybrid"),
        ("qwertyuiop zxcv", "hybrid"),
        ("qwertyuiop", "lexical"),
    ]:
        body = client.post("/search", json={"text": text, "mode": mode, "k": 3}).json()
        want = assess(tiny_engine, text, mode=mode).to_dict()
        assert body["match"]["weak"] == want["weak"] and body["match"]["reason"] == want["reason"], text
    assert client.post("/search", json={"text": "qwertyuiop", "mode": "lexical"}).json()["match"]["weak"]
    assert not client.post("/search", json={"text": "waterproof"}).json()["match"]["weak"]


def test_photo_queries_are_not_judged(client, photos):
    body = client.post("/search", json={"image": b64(photos / "p04.jpg"), "mode": "image", "k": 2}).json()
    assert body["match"]["weak"] is False and "photo" in body["match"]["reason"]


def test_filters_ignore_case_and_match_tokens_over_http(client):
    def search(filters):
        return ids(
            client.post("/search", json={"text": "yellow", "mode": "text", "k": 12, "filters": filters})
        )

    exact = search({"category": "bag"})
    assert exact and len(exact) < len(search(None))  # the filter removes something
    assert search({"category": " BAG "}) == exact == search({"field": "category", "match": "Bag"})
