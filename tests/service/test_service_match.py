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


def test_crop_box_searches_the_box_only(client, tiny_engine, photos):
    from PIL import Image

    from prodsearch.search.regions import crop

    body = {"image": b64(photos / "p04.jpg"), "mode": "image", "k": 5, "crop": [0.25, 0.25, 0.75, 0.75]}
    got = ids(client.post("/search", json=body))
    want = [
        r.id
        for r in tiny_engine.search(
            image=crop(Image.open(photos / "p04.jpg").convert("RGB"), body["crop"]), mode="image", k=5
        )
    ]
    assert got == want
    bad = client.post("/search", json={**body, "crop": [0.5, 0, 0.4, 1]})
    assert bad.status_code in (400, 422) and "crop box" in bad.text


def test_regions_auto_merges_the_regions_of_a_scene(client, tiny_engine, photos):
    import base64
    import io

    from PIL import Image

    from prodsearch.search.regions import multi_crop_search

    scene = Image.new("RGB", (240, 120), (128, 128, 128))
    scene.paste(Image.open(photos / "p01.jpg").convert("RGB").resize((100, 100)), (10, 10))
    scene.paste(Image.open(photos / "p09.jpg").convert("RGB").resize((100, 100)), (130, 10))
    buf = io.BytesIO()
    scene.save(buf, "PNG")
    body = {"image": base64.b64encode(buf.getvalue()).decode(), "regions": "auto", "k": 5}
    resp = client.post("/search", json=body)
    assert ids(resp) == [r.id for r in multi_crop_search(tiny_engine, scene, k=5)]
    assert resp.json()["signals"] == ["regions"]
    bad = client.post("/search", json={**body, "text": "red"})
    assert bad.status_code in (400, 422) and "regions=auto" in bad.text
