"""Helpers shared by the service tests (fixtures live in conftest.py)."""

from __future__ import annotations

import base64
from pathlib import Path

from prodsearch.service.settings import Settings

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_settings(**overrides) -> Settings:
    """Test-sized limits; ``overrides`` win."""
    base = dict(
        api_token=TOKEN,
        max_upload_bytes=256 * 1024,
        max_image_pixels=1_000_000,
        max_k=20,
        max_offset=50,
        request_timeout_s=5.0,
        max_text_chars=200,
    )
    return Settings(_env_file=None, **{**base, **overrides})


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["results"]]


def error_of(response, status: int) -> dict:
    """The error body of a response that must have ``status``; fails showing the body otherwise."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
    assert "Traceback" not in body["error"]["message"]
    return body["error"]


def photo_bytes(colour: str, size: tuple[int, int] = (40, 52)) -> bytes:
    """JPEG bytes of a product-like photo whose dominant colour the fake image encoder reads as ``colour``."""
    import io

    from PIL import Image, ImageDraw

    from fakes import COLOURS

    img = Image.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(img).rectangle([5, 5, size[0] - 5, size[1] - 5], fill=COLOURS[colour])
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()
