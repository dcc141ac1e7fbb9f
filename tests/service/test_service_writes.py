"""Add / update / delete over HTTP: auth, validation, and that search sees the change at once."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import pytest
from PIL import Image
from service_helpers import AUTH, error_of, ids, photo_bytes

NEW = {
    "id": "n1",
    "title": "Yellow raincoat",
    "text": {"description": "bright waterproof coat"},
    "attributes": {"colour": "yellow", "category": "jacket", "gender": "women", "price": 70},
}


def _files(tmp_path) -> list[str]:
    root = tmp_path / "index" / "uploads"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_writes_need_the_token(make_client):
    c = make_client()
    e = error_of(c.post("/products", json=NEW), 401)
    assert "missing bearer token" in e["message"]
    e = error_of(c.post("/products", json=NEW, headers={"Authorization": "Bearer wrong-token-xx"}), 401)
    assert e["message"] == "wrong bearer token"
    assert error_of(c.delete("/products/p01", headers={"Authorization": "Basic abc"}), 401)
    off = make_client(api_token=None)
    e = error_of(off.post("/products", json=NEW, headers=AUTH), 403)
    assert "PRODSEARCH_API_TOKEN" in e["message"]
    assert error_of(off.delete("/products/p01", headers=AUTH), 403)
    assert off.get("/products/p01").status_code == 200  # nothing was deleted


def test_add_with_base64_photo_is_searchable_at_once(client, tmp_path):
    photo = photo_bytes("yellow")
    r = client.post("/products", json={**NEW, "image": base64.b64encode(photo).decode()}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"added": 1, "updated": 0, "unchanged": 0, "products": 13}
    assert ids(client.post("/search", json={"text": "raincoat", "mode": "lexical", "k": 1})) == ["n1"]
    assert "n1" in ids(client.post("/search", json={"text": "yellow", "mode": "image", "k": 3}))
    sha = hashlib.sha256(photo).hexdigest()
    assert _files(tmp_path) == [f"{sha}.jpg"]
    got = client.get("/products/n1")
    assert got.json()["attributes"]["price"] == "70" and got.json()["image_url"] == "/products/n1/image"
    assert client.get("/products/n1/image").content == photo


def test_add_multipart_then_update_keeps_photo_then_delete(client, tmp_path, photos):
    r = client.post(
        "/products",
        headers=AUTH,
        data={"product": json.dumps(NEW)},
        files={"image": ("coat.jpg", photo_bytes("yellow"), "image/jpeg")},
    )
    assert r.json()["added"] == 1, r.text
    upd = {**NEW, "title": "Yellow anorak"}
    assert client.post("/products", json=upd, headers=AUTH).json()["updated"] == 1
    assert ids(client.post("/search", json={"text": "anorak", "mode": "lexical", "k": 1})) == ["n1"]
    assert ids(client.post("/search", json={"text": "raincoat", "mode": "lexical", "k": 1})) != ["n1"]
    assert client.get("/products/n1").json()["image_url"] is not None  # keep_image defaults to true
    no_photo = {**upd, "keep_image": False}
    assert client.post("/products", json=no_photo, headers=AUTH).json()["updated"] == 1
    assert client.get("/products/n1").json()["image_url"] is None
    assert "n1" not in ids(client.post("/search", json={"text": "yellow", "mode": "image", "k": 12}))

    r = client.delete("/products/n1", headers=AUTH)
    assert r.json() == {"deleted": 1, "products": 12}
    assert error_of(client.get("/products/n1"), 404)
    assert "n1" not in ids(client.post("/search", json={"text": "anorak yellow", "k": 12}))


def test_delete_many_and_unknown_ids_delete_nothing(client):
    e = error_of(client.request("DELETE", "/products", json={"ids": ["p01", "ghost"]}, headers=AUTH), 404)
    assert "ghost" in e["message"]
    assert client.get("/products/p01").status_code == 200
    r = client.request("DELETE", "/products", json={"ids": ["p07", "p11", "p07"]}, headers=AUTH)
    assert r.json() == {"deleted": 2, "products": 10}
    assert not {"p07", "p11"} & set(ids(client.post("/search", json={"text": "yellow", "k": 12})))
    assert error_of(client.delete("/products/p07", headers=AUTH), 404)


@pytest.mark.parametrize(
    "bad, status, words",
    [
        ({**NEW, "image": base64.b64encode(b"not an image").decode()}, 400, "cannot decode"),
        ({**NEW, "attributes": {"size": "XL"}}, 422, "size"),  # unknown attribute field
        ({**NEW, "title": "  "}, 422, "title"),
        ({k: v for k, v in NEW.items() if k != "title"}, 422, "title"),
        ({**NEW, "id": ""}, 422, "id"),
        ({**NEW, "sku": "x"}, 422, "sku"),
    ],
)
def test_bad_writes_leave_the_index_as_it_was(client, tmp_path, bad, status, words):
    before = ids(client.post("/search", json={"text": "yellow", "k": 20}))
    e = error_of(client.post("/products", json=bad, headers=AUTH), status)
    assert words in e["message"]
    assert ids(client.post("/search", json={"text": "yellow", "k": 20})) == before
    assert client.get("/healthz").json()["products"] == 12 and _files(tmp_path) == []


def test_engine_failure_during_upsert_removes_the_uploaded_photo(
    make_client, tiny_engine, tmp_path, monkeypatch
):
    c = make_client(raise_server_exceptions=False)

    def fail(*args, **kwargs):
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr("prodsearch.search.builder.encode_products", fail)
    r = c.post(
        "/products",
        headers=AUTH,
        data={"product": json.dumps(NEW)},
        files={"image": ("coat.jpg", photo_bytes("yellow"), "image/jpeg")},
    )
    assert error_of(r, 500)["type"] == "InternalError"
    assert _files(tmp_path) == [] and error_of(c.get("/products/n1"), 404)
    assert len(tiny_engine) == 12


def test_oversized_and_bomb_photos_are_refused(client, tmp_path):
    big = io.BytesIO()
    Image.new("RGB", (1200, 1000), (200, 10, 10)).save(big, "JPEG")  # 1.2 Mpx > 1 Mpx cap
    r = client.post(
        "/products",
        headers=AUTH,
        data={"product": json.dumps(NEW)},
        files={"image": ("big.jpg", big.getvalue(), "image/jpeg")},
    )
    assert "pixel" in error_of(r, 400)["message"]
    assert _files(tmp_path) == [] and client.get("/healthz").json()["products"] == 12
