"""Read a request body that may be JSON or multipart into a typed model plus optional image bytes.

Multipart form fields: ``image`` (a file) and either one JSON field (``query`` for search,
``product`` for writes) or plain fields named like the model's (``text=red``, ``k=5``), where the
fields in ``json_fields`` (e.g. ``filters``) are JSON strings.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from prodsearch.service.handlers import ApiError
from prodsearch.service.limits import decode_base64

M = TypeVar("M", bound=BaseModel)
MAX_FORM_FIELDS = 32
#: Deepest nesting of arrays/objects a request may have (a filter needs a handful of levels).
MAX_DEPTH = 32
#: Longest array in a request (id lists of recommend and delete, a filter's ``in`` list).
MAX_ITEMS = 1_000
#: Integers a request may carry: what SQLite and float64 hold without overflow.
MAX_INT = 2**63 - 1


def check_json(obj: Any, what: str = "body") -> None:
    """Raise :class:`ValueError` naming the place of the first value a request may not carry:
    nesting deeper than :data:`MAX_DEPTH`, an array longer than :data:`MAX_ITEMS`, an integer
    beyond +-:data:`MAX_INT`, a non-finite number, or a string that is not valid Unicode (a lone
    surrogate such as ``"\\ud800"``). Iterative, so any depth is safe to check."""
    stack: list[tuple[Any, str, int]] = [(obj, what, 0)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as err:
                raise ValueError(
                    f"{where}: text is not valid Unicode ({err.reason} at position {err.start}: "
                    f"{value[err.start : err.end]!a}); send UTF-8 text"
                ) from None
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if abs(value) > MAX_INT:
                raise ValueError(
                    f"{where}: integer with {len(str(abs(value)))} digits is out of range (max {MAX_INT})"
                )
        elif isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"{where}: number must be finite, got {value}")
        elif isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise ValueError(f"{where}: nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, list):
                if len(value) > MAX_ITEMS:
                    raise ValueError(f"{where}: {len(value)} items, at most {MAX_ITEMS} allowed")
                stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
            else:
                for k, v in value.items():
                    path = f"{where}.{k}" if where else str(k)
                    stack.append((k, f"{path} (key)", depth + 1))
                    stack.append((v, path, depth + 1))


def parse_json(raw: str | bytes, what: str) -> Any:
    """Decoded JSON that passed :func:`check_json`; 400 for malformed JSON, 422 for a value past a limit."""
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, "MalformedJSON", f"malformed JSON in {what}: {err}") from err
    except RecursionError:
        raise ApiError(422, "ValidationError", f"{what}: nested deeper than {MAX_DEPTH} levels") from None
    try:
        check_json(obj, what)
    except ValueError as err:
        raise ApiError(422, "ValidationError", str(err)) from None
    return obj


def _validate(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise ApiError(422, "ValidationError", f"expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise RequestValidationError(err.errors()) from err


async def read_model(
    request: Request, model: type[M], json_field: str, json_fields: frozenset[str] = frozenset()
) -> tuple[M, bytes | None]:
    """The model and the uploaded image bytes (from the ``image`` file or base64 field), if any."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        return await _read_multipart(request, model, json_field, json_fields)
    if ctype not in ("application/json", ""):
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"content-type {ctype!r}: send application/json or multipart/form-data",
        )
    body = await request.body()
    if not body:
        raise ApiError(400, "MalformedJSON", "empty request body: expected a JSON object")
    obj = _validate(model, parse_json(body, "request body"))
    image = getattr(obj, "image", None)
    return obj, (decode_base64(image, "image") if image else None)


async def _read_multipart(
    request: Request, model: type[M], json_field: str, json_fields: frozenset[str]
) -> tuple[M, bytes | None]:
    form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS)
    try:
        data: dict[str, Any] = {}
        image: bytes | None = None
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "image":
                    raise ApiError(
                        422, "ValidationError", f"{key}: unexpected file field; send the photo as 'image'"
                    )
                image = await value.read()
            elif key == json_field:
                obj = parse_json(value, f"form field {json_field!r}")
                if not isinstance(obj, dict):
                    raise ApiError(422, "ValidationError", f"{json_field}: expected a JSON object")
                data.update(obj)
            elif key == "image":
                raise ApiError(422, "ValidationError", "image: expected a file upload in a multipart request")
            else:
                data[key] = parse_json(value, f"form field {key!r}") if key in json_fields else value
        obj = _validate(model, data)
        b64 = getattr(obj, "image", None)
        if b64 and image is not None:
            raise ApiError(422, "ValidationError", "image: give either a file upload or base64, not both")
        return obj, image if image is not None else (decode_base64(b64, "image") if b64 else None)
    finally:
        await form.close()
