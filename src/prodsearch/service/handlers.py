"""Map exceptions to HTTP errors: ``{"error": {"type": ..., "message": ...}}``, never a traceback.

Domain errors (:mod:`prodsearch.errors`) are mapped here and only here; routes raise
:class:`ApiError` for HTTP-only conditions (auth, size caps, timeouts).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from prodsearch import errors as E

log = logging.getLogger(__name__)

#: Domain error -> status code; first match wins (subclasses before base classes).
STATUS: list[tuple[type[BaseException], int]] = [
    (E.ProductNotFoundError, 404),
    (E.QueryError, 400),
    (E.ImageError, 400),
    (E.CatalogError, 422),
    (E.ConfigError, 400),
]


class ApiError(Exception):
    """An HTTP error raised by a route or dependency."""

    def __init__(self, status: int, type_: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.type, self.message, self.headers = status, type_, message, headers


def error_response(
    status: int, type_: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status, headers=headers)


def _loc(loc: tuple) -> str:
    # only the leading part names where the value came from: a body field may be called "query"
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path") else loc
    return ".".join(str(p) for p in parts) or "body"


def validation_message(errors: list[dict]) -> tuple[str, str]:
    """(type, message) of a request validation failure; malformed JSON is named as such."""
    for e in errors:
        if e.get("type") == "json_invalid":
            ctx = e.get("ctx", {}).get("error", "")
            return "MalformedJSON", f"malformed JSON body: {ctx}".rstrip(": ")
    parts = []
    for e in errors[:10]:
        where = _loc(tuple(e.get("loc", ())))
        msg = e.get("msg", "invalid")
        if e.get("type") == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{where}: {msg}")
    return "ValidationError", "; ".join(parts)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.type, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        type_, msg = validation_message(list(exc.errors()))
        return error_response(400 if type_ == "MalformedJSON" else 422, type_, msg)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}
        return error_response(exc.status_code, names.get(exc.status_code, "HTTPError"), str(exc.detail))

    @app.exception_handler(E.ProdsearchError)
    async def _domain(_: Request, exc: E.ProdsearchError) -> JSONResponse:
        for cls, status in STATUS:
            if isinstance(exc, cls):
                return error_response(status, type(exc).__name__, str(exc))
        log.error("unmapped prodsearch error: %s", exc, exc_info=exc)
        return error_response(500, type(exc).__name__, str(exc))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "InternalError", "internal server error (see the server log)")
