"""Bad input and limits: each a 4xx JSON error naming the problem, and the service keeps serving."""

from __future__ import annotations

import base64
import io
import resource
import struct
import time
import zlib

import pytest
from PIL import Image
from service_helpers import error_of, ids


def _png_bomb(side: int) -> bytes:
    """A valid ``side`` x ``side`` greyscale PNG of zeros: a few hundred KB on disk, side**2 bytes decoded.
    Built by hand so the test process never holds the decoded image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_malformed_json(client):
    e = error_of(
        client.post("/search", content=b'{"text": "red",', headers={"content-type": "application/json"}), 400
    )
    assert e["type"] == "MalformedJSON" and "JSON" in e["message"]
    e = error_of(
        client.post("/recommend", content=b"{nope", headers={"content-type": "application/json"}), 400
    )
    assert e["type"] == "MalformedJSON"
    e = error_of(client.post("/search", content=b"", headers={"content-type": "application/json"}), 400)
    assert "empty request body" in e["message"]
    e = error_of(client.post("/search", json=["red"]), 422)
    assert "JSON object" in e["message"]


def test_unknown_fields_and_wrong_types(client):
    e = error_of(client.post("/search", json={"text": "red", "colour": "red"}), 422)
    assert "colour: unknown field" in e["message"]
    e = error_of(client.post("/search", json={"text": "red", "k": "many"}), 422)
    assert e["message"].startswith("k:") and "integer" in e["message"]
    e = error_of(client.post("/search", json={"text": "red", "mode": "magic"}), 422)
    assert "mode" in e["message"] and "hybrid" in e["message"]
    e = error_of(client.post("/search", json={"text": "red", "image_weight": 2}), 422)
    assert "image_weight" in e["message"]
    e = error_of(client.post("/recommend", json={"positive": []}), 422)
    assert "positive" in e["message"]
    e = error_of(client.post("/search", content=b"text=red", headers={"content-type": "text/plain"}), 415)
    assert "application/json" in e["message"]


def test_empty_query_and_unknown_filter_field_and_weight(client):
    e = error_of(client.post("/search", json={"text": "   "}), 400)
    assert e["type"] == "QueryError" and "empty query" in e["message"]
    e = error_of(client.post("/search", json={}), 400)
    assert "empty query" in e["message"]
    e = error_of(client.post("/search", json={"text": "red", "filters": {"colr": "red"}}), 400)
    assert "colr" in e["message"]
    e = error_of(client.post("/search", json={"text": "red", "weights": {"bogus": 1}}), 400)
    assert "bogus" in e["message"]
    e = error_of(client.get("/facets", params={"fields": "size"}), 400)
    assert "size" in e["message"]
    e = error_of(client.get("/facets", params={"filters": "{bad"}), 400)
    assert e["type"] == "MalformedJSON" and "filters" in e["message"]


def test_caps_on_k_offset_and_text(client):
    e = error_of(client.post("/search", json={"text": "red", "k": 21}), 422)
    assert "k: 21 exceeds the cap of 20" in e["message"]
    e = error_of(client.post("/search", json={"text": "red", "offset": 51}), 422)
    assert "offset: 51" in e["message"]
    e = error_of(client.get("/products/p01/similar", params={"k": 500}), 422)
    assert "k: 500" in e["message"]
    e = error_of(client.post("/search", json={"text": "a" * 201}), 422)
    assert "text: 201 characters" in e["message"]
    assert ids(client.post("/search", json={"text": "red", "k": 20, "offset": 50})) == []


def test_unknown_products_and_routes(client):
    e = error_of(client.get("/products/nope"), 404)
    assert e["type"] == "ProductNotFoundError" and "nope" in e["message"]
    assert "nope" in error_of(client.get("/products/nope/similar"), 404)["message"]
    assert "ghost" in error_of(client.get("/products/ghost/image"), 404)["message"]
    assert "zzz" in error_of(client.post("/recommend", json={"positive": ["p01", "zzz"]}), 404)["message"]
    assert error_of(client.get("/no/such/route"), 404)["type"] == "NotFound"
    assert error_of(client.put("/search", json={}), 405)["type"] == "MethodNotAllowed"


def test_corrupt_and_non_image_uploads(client, photos):
    e = error_of(
        client.post("/search", json={"image": base64.b64encode(b"not an image at all").decode()}), 400
    )
    assert e["type"] == "ImageError" and "cannot decode" in e["message"]
    e = error_of(client.post("/search", json={"image": "%%%not base64%%%"}), 400)
    assert "base64" in e["message"]
    truncated = (photos / "p01.jpg").read_bytes()[:300]
    e = error_of(client.post("/search", files={"image": ("p.jpg", truncated, "image/jpeg")}), 400)
    assert e["type"] == "ImageError"
    e = error_of(
        client.post("/search", files={"image": ("p.txt", b"hello", "text/plain")}, data={"text": "red"}), 400
    )
    assert "cannot decode" in e["message"]
    e = error_of(client.post("/search", files={"photo": ("p.jpg", b"x", "image/jpeg")}), 422)
    assert "photo" in e["message"]
    e = error_of(client.post("/search", files={"image": ("p.jpg", b"", "image/jpeg")}), 400)
    assert "empty" in e["message"]


def test_pixel_cap_refuses_decompression_bomb_with_bounded_memory(client):
    bomb = _png_bomb(8000)  # 64 Mpx: 64 MB if decoded, ~65 KB on the wire
    assert len(bomb) < 256 * 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    e = error_of(client.post("/search", files={"image": ("bomb.png", bomb, "image/png")}), 400)
    assert "8000x8000" in e["message"] and "pixel" in e["message"]
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 32, f"peak memory grew by {grown_mib:.0f} MiB: the bomb was decoded"


def test_body_size_cap_from_content_length_and_while_streaming(client):
    big = b"x" * (256 * 1024 + 1)
    e = error_of(client.post("/search", content=big, headers={"content-type": "application/json"}), 413)
    assert e["type"] == "PayloadTooLarge" and "262144-byte cap" in e["message"]

    def chunks():  # no Content-Length: the cap must hold while the body streams in
        for _ in range(100):
            yield b"y" * 8192

    e = error_of(client.post("/search", content=chunks(), headers={"content-type": "application/json"}), 413)
    assert "cap" in e["message"]
    img = io.BytesIO()
    Image.effect_noise((400, 400), 100).convert("RGB").save(img, "PNG")  # noise: ~480 KB, over the cap
    e = error_of(client.post("/search", files={"image": ("n.png", img.getvalue(), "image/png")}), 413)
    assert client.post("/search", json={"text": "red", "k": 1}).status_code == 200


def test_slow_engine_call_times_out_with_504(make_client, tiny_engine, monkeypatch):
    c = make_client(request_timeout_s=0.05)

    def slow_search(*args, **kwargs):
        time.sleep(0.5)

    monkeypatch.setattr(tiny_engine, "search", slow_search)
    t = time.perf_counter()
    e = error_of(c.post("/search", json={"text": "red"}), 504)
    assert time.perf_counter() - t < 0.4 and e["type"] == "Timeout" and "0.05" in e["message"]


def test_internal_errors_do_not_leak_tracebacks(make_client, tiny_engine, monkeypatch):
    c = make_client(raise_server_exceptions=False)

    def broken(*args, **kwargs):
        raise RuntimeError("secret /internal/path detail")

    monkeypatch.setattr(tiny_engine, "search", broken)
    e = error_of(c.post("/search", json={"text": "red"}), 500)
    assert e["type"] == "InternalError" and "secret" not in e["message"]
    monkeypatch.undo()
    assert ids(c.post("/search", json={"text": "red", "k": 1}))


@pytest.mark.parametrize(
    "payload", [{"text": 5}, {"filters": "gender=men", "text": "x"}, {"facets": {"a": 1}, "text": "x"}]
)
def test_service_keeps_serving_after_bad_input(client, payload):
    assert client.post("/search", json=payload).status_code in (400, 422)
    assert ids(client.post("/search", json={"text": "waterproof", "mode": "lexical", "k": 1})) == ["p10"]
