"""Bodies past a limit get a 4xx naming the place, never a 500 (issue 9 item 6): a lone surrogate,
a 10**400 filter value, JSON nested ~1000 deep, unbounded id lists, ids with '/'; uploaded photos
go with their product."""

from __future__ import annotations

import re

import pytest
from service_helpers import AUTH, error_of, photo_bytes

from prodsearch.errors import QueryError
from prodsearch.index.filters import parse_filter
from prodsearch.service.bodies import MAX_DEPTH, check_json

DEEP = 1000


def post_raw(client, url: str, body: str, headers: dict | None = None):
    return client.post(
        url, content=body.encode(), headers={"content-type": "application/json", **(headers or {})}
    )


BIG = "1" + "0" * 400
NOT_DEEP = '{"not": ' * DEEP + '{"gender": "men"}' + "}" * DEEP
LIST_DEEP = "[" * DEEP + "]" * DEEP
ONES = ",".join(["1"] * 1001)
BAD_BODIES = [
    ("surrogate", "/search", '{"text": "\\ud800 shirt"}', r"text: text is not valid Unicode .*'\\ud800'"),
    (
        "10**400",
        "/search",
        f'{{"text": "s", "filters": {{"price": {BIG}}}}}',
        r"filters\.price: integer with 401 digits",
    ),
    (
        "10**400 in list",
        "/search",
        f'{{"text": "s", "filters": {{"field": "price", "in": [1, {BIG}]}}}}',
        r"in\[1\]: integer",
    ),
    ("deep filter", "/search", f'{{"text": "s", "filters": {NOT_DEEP}}}', "nested deeper"),
    ("deep unknown field", "/search", f'{{"text": "s", "zzz": {LIST_DEEP}}}', "nested deeper"),
    ("long in", "/search", f'{{"text": "s", "filters": {{"field": "price", "in": [{ONES}]}}}}', "1001 items"),
    (
        "recommend surrogate",
        "/recommend",
        '{"positive": ["\\udc00"]}',
        r"positive\[0\]: text is not valid Unicode",
    ),
    (
        "recommend deep",
        "/recommend",
        '{"positive": ["p01"], "filters": ' + '{"not": ' * 40 + "{}" + "}" * 41,
        "nested deeper than 32",
    ),
]


@pytest.mark.parametrize("url, body, message", [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES])
def test_bad_bodies_are_4xx_with_a_message(make_client, url, body, message):
    client = make_client(raise_server_exceptions=False)
    e = error_of(post_raw(client, url, body), 422)
    assert re.search(message, e["message"]), e["message"]
    assert client.get("/healthz").status_code == 200  # the server is fine afterwards


def test_id_lists_are_bounded(client):
    e = error_of(client.post("/recommend", json={"positive": ["p01"] * 101}), 422)
    assert "positive" in e["message"] and "100" in e["message"]
    e = error_of(client.request("DELETE", "/products", json={"ids": ["p01"] * 101}, headers=AUTH), 422)
    assert "ids" in e["message"]


def test_ids_with_a_slash_are_refused_so_every_written_id_can_be_fetched(client):
    e = error_of(client.post("/products", json={"id": "a/b", "title": "x"}, headers=AUTH), 422)
    assert "'/'" in e["message"] and "URL" in e["message"]
    assert (
        client.post("/products", json={"id": "a-b.c d", "title": "Plain shirt"}, headers=AUTH).status_code
        == 200
    )
    assert client.get("/products/a-b.c d").json()["title"] == "Plain shirt"


def test_uploads_are_removed_with_their_product(client, tiny_engine):
    uploads = tiny_engine.root / "uploads"
    meta = '{"id": "n1", "title": "Yellow raincoat"}'
    r = client.post(
        "/products",
        data={"product": meta},
        files={"image": ("a.jpg", photo_bytes("yellow"), "image/jpeg")},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    first = sorted(uploads.iterdir())
    assert len(first) == 1
    r = client.post(
        "/products",
        data={"product": meta},
        files={"image": ("b.jpg", photo_bytes("red"), "image/jpeg")},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    second = sorted(uploads.iterdir())
    assert len(second) == 1 and second != first  # the replaced photo is gone
    assert client.delete("/products/n1", headers=AUTH).status_code == 200
    assert not list(uploads.iterdir())


def test_check_json_and_parse_filter_limits():
    deep: list = []
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper"):
        check_json({"a": deep})
    check_json({"a": [[["ok", 1, 2.5, None, True]]]})
    with pytest.raises(ValueError, match=r"a\.b: number must be finite"):
        check_json({"a": {"b": float("nan")}})
    with pytest.raises(QueryError, match="within"):
        parse_filter({"price": 10**400})
