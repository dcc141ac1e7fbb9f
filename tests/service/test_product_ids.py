"""A catalog product id containing '/' (issue 9 item 6): written by `prodsearch index`, then fetched
the same way through the CLI, the Python engine and HTTP (as sent, or with the '/' as %2F, which is
how the API's own image URLs encode it)."""

from __future__ import annotations

import csv
import json

from fastapi.testclient import TestClient
from service_helpers import AUTH, make_settings

from cli_helpers import run_cli
from prodsearch.search.engine import Engine
from prodsearch.service.app import create_app


def test_an_id_with_a_slash_is_written_and_fetched_by_cli_python_and_http(tmp_path, tiny_catalog, capsys):
    rows = list(csv.DictReader(tiny_catalog.open()))
    rows[0]["id"] = "AB/12"  # p01, the red shirt
    rows[1]["id"] = "look/similar"  # an id that ends like a route's suffix
    with tiny_catalog.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "idx"
    fake = ["--text-encoder", "fake-text", "--image-encoder", "fake-image", "--no-calibrate"]
    code, stdout, _ = run_cli(capsys, "index", str(tiny_catalog), "--out", str(out), *fake)
    assert code == 0 and "12/12 rows accepted" in stdout

    code, stdout, _ = run_cli(capsys, "similar", str(out), "AB/12", "-k", "2", "--json")
    assert code == 0 and len(json.loads(stdout)["results"]) == 2

    engine = Engine.open(out)  # its own (toy) encoders, from the manifest
    try:
        assert engine.get("AB/12").title == rows[0]["title"]
        with TestClient(create_app(engine, make_settings())) as client:
            for url in ("/products/AB%2F12", "/products/AB/12"):
                got = client.get(url)
                assert got.status_code == 200 and got.json()["id"] == "AB/12", url
            image_url = client.get("/products/AB%2F12").json()["image_url"]
            assert "AB%2F12" in image_url
            photo = client.get(image_url)
            assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
            similar = client.get("/products/AB%2F12/similar", params={"k": 3})
            assert similar.status_code == 200 and "AB/12" not in [r["id"] for r in similar.json()["results"]]
            assert client.get("/products/AB%2F13").status_code == 404
            # an id ending in "/similar": the path form routes to similar products of "look", the
            # query form fetches it; its photo and similar products are reachable by path
            assert client.get("/products/look%2Fsimilar").status_code == 404  # no product "look"
            got = client.get("/products", params={"id": "look/similar"})
            assert got.status_code == 200 and got.json()["title"] == rows[1]["title"]
            assert client.get(got.json()["image_url"]).status_code == 200
            near = client.get("/products/look%2Fsimilar/similar", params={"k": 2})
            assert near.status_code == 200 and "look/similar" not in [r["id"] for r in near.json()["results"]]
            assert client.get("/products", params={"id": "nope"}).status_code == 404
            missing = client.get("/products")
            assert missing.status_code == 422 and "id" in missing.text
            gone = client.delete("/products/AB%2F12", headers=AUTH)
            assert gone.status_code == 200 and gone.json()["deleted"] == 1
            assert client.get("/products/AB%2F12").status_code == 404
    finally:
        engine.close()
