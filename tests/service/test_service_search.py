"""Read endpoints over the tiny index, whose right answers are known by construction."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families
from service_helpers import b64, ids


def test_text_search_returns_ranked_results_with_image_urls(client):
    r = client.post("/search", json={"text": "waterproof", "mode": "lexical", "k": 3})
    assert ids(r)[0] == "p10"
    top = r.json()["results"][0]
    assert top["rank"] == 1 and top["title"] == "Green rain jacket"
    assert top["attributes"]["colour"] == "green" and top["image_url"] == "/products/p10/image"
    assert "explanation" not in top or top["explanation"] is None
    assert set(r.json()["timings_ms"]) >= {"filter", "lexical", "fuse"}


def test_http_results_equal_the_engine_results(client, tiny_engine):
    body = {
        "text": "black leather",
        "k": 5,
        "mode": "hybrid",
        "fusion": "weighted",
        "weights": {"image": 0.5},
    }
    r = client.post("/search", json=body)
    ref = tiny_engine.search("black leather", k=5, mode="hybrid", fusion="weighted", weights={"image": 0.5})
    assert ids(r) == [x.id for x in ref.results]
    assert all(
        abs(a["score"] - b.score) < 1e-6 for a, b in zip(r.json()["results"], ref.results, strict=True)
    )


def test_cross_modal_text_finds_photos(client):
    assert set(ids(client.post("/search", json={"text": "yellow", "mode": "image", "k": 2}))) == {
        "p07",
        "p11",
    }


def test_image_search_base64_and_multipart_agree(client, photos):
    r1 = client.post("/search", json={"image": b64(photos / "p04.jpg"), "mode": "image", "k": 3})
    with open(photos / "p04.jpg", "rb") as fh:
        r2 = client.post(
            "/search",
            files={"image": ("p04.jpg", fh, "image/jpeg")},
            data={"query": json.dumps({"mode": "image", "k": 3})},
        )
    assert ids(r1)[0] == "p04" and ids(r1) == ids(r2)
    assert "decode" in r1.json()["timings_ms"]


def test_multipart_plain_fields_and_data_url(client, photos):
    with open(photos / "p01.jpg", "rb") as fh:  # a red shirt, pushed towards blue by the text
        r = client.post(
            "/search",
            files={"image": ("p.jpg", fh, "image/jpeg")},
            data={"text": "blue", "mode": "image", "k": "2", "image_weight": "0.3"},
        )
    assert set(ids(r)) == {"p02", "p09"}
    url = "data:image/jpeg;base64," + b64(photos / "p10.jpg")
    assert ids(client.post("/search", json={"image": url, "mode": "image", "k": 1})) == ["p10"]


def test_filters_facets_and_paging(client):
    r = client.post(
        "/search", json={"text": "shirt", "k": 12, "filters": {"gender": "men"}, "facets": ["category"]}
    )
    assert set(ids(r)) <= {"p01", "p02", "p04", "p08"} and ids(r)
    counts = {f["value"]: f["count"] for f in r.json()["facets"]["category"]}
    assert counts == {"shirt": 2, "shoe": 1, "bag": 1}
    full = ids(client.post("/search", json={"text": "shirt", "k": 12}))
    assert ids(client.post("/search", json={"text": "shirt", "k": 3, "offset": 3})) == full[3:6]
    r = client.post(
        "/search",
        json={"text": "red", "mode": "image", "filters": {"not": {"field": "category", "eq": "shoe"}}},
    )
    assert ids(r)[0] == "p01" and "p06" not in ids(r)


def test_explain_returns_signal_contributions(client):
    r = client.post("/search", json={"text": "black leather wallet", "k": 1, "explain": True})
    top = r.json()["results"][0]
    assert top["id"] == "p08"
    e = top["explanation"]
    assert abs(sum(e["contributions"].values()) - top["score"]) < 1e-5
    assert {"black", "leather", "wallet"} <= set(e["matched_terms"]) and e["matched_attributes"][
        "colour"
    ] == "black"


def test_default_k_comes_from_settings(make_client):
    c = make_client(default_k=4)
    assert len(ids(c.post("/search", json={"text": "shirt"}))) == 4


def test_similar_and_recommend(client, tiny_engine):
    r = client.get("/products/p01/similar", params={"by": "image", "k": 3})
    assert ids(r)[0] == "p06" and "p01" not in ids(r)
    r = client.get(
        "/products/p01/similar", params={"by": "image", "k": 5, "filters": json.dumps({"category": "shirt"})}
    )
    assert ids(r) and all(x["attributes"]["category"] == "shirt" for x in r.json()["results"])
    r = client.post(
        "/recommend", json={"positive": ["p04", "p08"], "negative": ["p05"], "by": "image", "k": 4}
    )
    ref = tiny_engine.recommend(["p04", "p08"], ["p05"], by="image", k=4)
    assert ids(r) == [x.id for x in ref.results] and not {"p04", "p08", "p05"} & set(ids(r))


def test_facets_endpoint_counts_filtered_products(client):
    r = client.get(
        "/facets", params={"fields": "category,gender", "filters": json.dumps({"colour": "black"})}
    )
    assert r.status_code == 200, r.text
    f = {k: {x["value"]: x["count"] for x in v} for k, v in r.json()["facets"].items()}
    assert f == {"category": {"shoe": 1, "bag": 1}, "gender": {"men": 2}}
    all_fields = client.get("/facets").json()["facets"]
    assert set(all_fields) == {"colour", "category", "gender", "price"}
    assert sum(x["count"] for x in all_fields["colour"]) == 12


def test_get_product_and_its_photo(client, photos):
    r = client.get("/products/p07")
    assert r.status_code == 200
    assert r.json() == {
        "id": "p07",
        "title": "Yellow canvas bag",
        "text": {"description": "tote bag for the beach"},
        "attributes": {"colour": "yellow", "category": "bag", "gender": "women", "price": "15.00"},
        "image_url": "/products/p07/image",
    }
    img = client.get("/products/p07/image")
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert img.content == (photos / "p07.jpg").read_bytes()


def test_healthz_and_openapi(client):
    h = client.get("/healthz").json()
    limits = h.pop("limits")
    assert h == {
        "status": "ok",
        "products": 12,
        "embedder": "fake",
        "aligned": True,
        "attributes": ["category", "colour", "gender", "price"],
        "writes_enabled": True,
    }
    assert limits["max_k"] == 20 and limits["max_upload_bytes"] == 256 * 1024
    spec = client.get("/openapi.json").json()
    for path in (
        "/search",
        "/products/{product_id}",
        "/products/{product_id}/similar",
        "/recommend",
        "/facets",
        "/products",
        "/healthz",
        "/metrics",
    ):
        assert path in spec["paths"], path
    body = spec["paths"]["/search"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert "mode" in spec["components"]["schemas"]["SearchRequest"]["properties"]
    assert client.get("/docs").status_code == 200


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_requests_and_stage_latencies(client, photos):
    client.post("/search", json={"text": "red shirt", "k": 2})
    client.post("/search", json={"image": b64(photos / "p01.jpg"), "k": 2})
    client.get("/products/nope")
    m = _samples(client.get("/metrics").text)
    assert (
        m[("prodsearch_http_requests_total", (("method", "POST"), ("route", "/search"), ("status", "200")))]
        == 2
    )
    assert (
        m[
            (
                "prodsearch_http_requests_total",
                (("method", "GET"), ("route", "/products/{product_id}"), ("status", "404")),
            )
        ]
        == 1
    )
    for stage in ("encode", "ann", "fuse", "filter"):
        assert m[("prodsearch_search_stage_seconds_count", (("stage", stage),))] == 2, stage
    assert m[("prodsearch_search_stage_seconds_count", (("stage", "lexical"),))] == 1  # text queries only
    assert m[("prodsearch_queries_total", (("kind", "image"),))] == 1


def test_each_app_has_its_own_metrics(make_client):
    a, b = make_client(), make_client()
    a.post("/search", json={"text": "red", "k": 1})
    key = ("prodsearch_queries_total", (("kind", "text"),))
    assert _samples(a.get("/metrics").text)[key] == 1
    assert _samples(b.get("/metrics").text).get(key, 0) == 0


def test_web_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="q"' in page.text and "static/app.js" in page.text
    for name, ctype in (("app.js", "javascript"), ("style.css", "text/css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and ctype in r.headers["content-type"]
