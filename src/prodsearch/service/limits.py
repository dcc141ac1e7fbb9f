"""Request limits: a body-size cap (from Content-Length and while reading) and safe image decoding.

The cap is enforced while the body streams in, so a client that lies about (or omits) the length
cannot make the server buffer more than ``max_bytes``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json

from fastapi import HTTPException
from PIL import Image
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prodsearch.catalog.images import load_image
from prodsearch.service.handlers import ApiError
from prodsearch.service.settings import Settings


def too_large(limit: int, size: int | None = None) -> HTTPException:
    body = f"request body of {size} bytes" if size is not None else "request body"
    return HTTPException(413, f"{body} exceeds the {limit}-byte cap (settings.max_upload_bytes)")


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 (raw ASGI, so it wraps every route)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_error(send, 400, "BadRequest", f"invalid Content-Length header {length!r}")
                return
            if declared > self.max_bytes:
                await _send_error(send, 413, "PayloadTooLarge", too_large(self.max_bytes, declared).detail)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise too_large(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except HTTPException as exc:
            if exc.status_code != 413 or started:
                raise
            await _send_error(send, 413, "PayloadTooLarge", str(exc.detail))


async def _send_error(send: Send, status: int, type_: str, message: str) -> None:
    body = json.dumps({"error": {"type": type_, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def decode_base64(data: str, field: str) -> bytes:
    """Bytes of a base64 string (a ``data:...;base64,`` prefix is allowed); 400 naming ``field`` otherwise."""
    if data.startswith("data:") and "," in data:
        data = data.split(",", 1)[1]
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ApiError(400, "ImageError", f"{field}: not valid base64 ({err})") from err


def check_image(data: bytes, settings: Settings, name: str) -> Image.Image:
    """Fully decode an uploaded image under the byte and pixel caps; 413/400 otherwise."""
    if len(data) > settings.max_upload_bytes:
        raise ApiError(
            413,
            "PayloadTooLarge",
            f"{name}: {len(data)} bytes exceeds the {settings.max_upload_bytes}-byte cap",
        )
    if not data:
        raise ApiError(400, "ImageError", f"{name}: empty file")
    return load_image(
        data, max_pixels=settings.max_image_pixels, max_bytes=settings.max_upload_bytes, name=name
    )


def image_format(data: bytes) -> str:
    """File extension for already-validated image bytes (from Pillow's format sniffing)."""
    with Image.open(io.BytesIO(data)) as img:
        fmt = (img.format or "bin").lower()
    return {"jpeg": "jpg", "mpo": "jpg"}.get(fmt, fmt)
