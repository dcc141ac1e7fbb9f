"""Write routes: add/replace and delete products (bearer token); the live index updates in place.

An uploaded photo is validated (byte and pixel caps, full decode) before anything is written,
stored content-addressed as ``INDEX/uploads/<sha256>.<ext>``, and removed again if the upsert
fails, so a failed write leaves the index and its folder as they were. An upload no product
references any more (its product deleted, or given another photo) is removed.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from prodsearch.catalog.images import bytes_sha256
from prodsearch.catalog.schema import Product
from prodsearch.paths import atomic_write_bytes
from prodsearch.service.bodies import read_model
from prodsearch.service.deps import Ctx, ServiceContext, require_token
from prodsearch.service.handlers import ApiError
from prodsearch.service.limits import check_image, image_format
from prodsearch.service.routes import ERRORS, body_doc
from prodsearch.service.schemas import DeleteOut, DeleteRequest, ProductIn, UpsertOut

router = APIRouter(dependencies=[Depends(require_token)], tags=["products"])
AUTH_ERRORS = {**ERRORS, 401: ERRORS[400], 403: ERRORS[400]}
UPLOADS = "uploads"
# One write at a time, including the photo file, so a failed write cannot remove a photo that a
# concurrent write of the same bytes is about to reference.
_write_lock = threading.Lock()


def _attr(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _check_attributes(ctx: ServiceContext, attributes: dict[str, Any]) -> None:
    known = (ctx.engine.manifest.mapping or {}).get("attributes")
    if not known:
        return
    unknown = sorted(set(attributes) - set(known))
    if unknown:
        raise ApiError(
            422, "ValidationError", f"attributes: unknown field(s) {unknown}; this index has {sorted(known)}"
        )


def _save_photo(root: Path, data: bytes) -> tuple[Path, str, bool]:
    """(path, sha256, created) of the upload, written atomically unless the same bytes are there."""
    sha = bytes_sha256(data)
    path = (root / UPLOADS / f"{sha}.{image_format(data)}").resolve()
    if path.is_file():
        return path, sha, False
    atomic_write_bytes(path, data)
    return path, sha, True


def _drop_unused_uploads(ctx: ServiceContext, paths: list[str | None]) -> None:
    """Remove uploaded photos (only files under ``INDEX/uploads``) that no product references now."""
    uploads = (ctx.engine.root / UPLOADS).resolve()
    for p in dict.fromkeys(paths):
        if p and Path(p).parent == uploads and not ctx.engine.store.image_path_in_use(p):
            Path(p).unlink(missing_ok=True)


def _upsert(ctx: ServiceContext, req: ProductIn, photo: bytes | None) -> dict[str, int]:
    engine = ctx.engine
    with _write_lock:
        old_path = engine.get(req.id).image_path if req.id in engine.store else None
        image_path = image_hash = None
        created: Path | None = None
        if photo is not None:
            check_image(photo, ctx.settings, "image")
            path, image_hash, new = _save_photo(engine.root, photo)
            image_path, created = str(path), (path if new else None)
        elif req.keep_image and req.id in engine.store:
            old = engine.get(req.id)
            image_path, image_hash = old.image_path, old.image_hash
        product = Product(
            id=req.id,
            title=req.title.strip(),
            text=dict(req.text),
            attributes={k: _attr(v) for k, v in req.attributes.items()},
            image_path=image_path,
            image_hash=image_hash,
        )
        try:
            counts = engine.upsert([product])
        except BaseException:
            if created is not None:
                created.unlink(missing_ok=True)
            raise
        if old_path != image_path:
            _drop_unused_uploads(ctx, [old_path])
        return counts


@router.post(
    "/products",
    response_model=UpsertOut,
    responses=AUTH_ERRORS,
    openapi_extra=body_doc("ProductIn", "product"),
)
async def upsert_product(request: Request, ctx: Ctx) -> UpsertOut:
    """Add or replace one product: JSON (photo as base64) or multipart (``product`` JSON + ``image`` file)."""
    req, photo = await read_model(request, ProductIn, "product", frozenset({"text", "attributes"}))
    if not req.title.strip():
        raise ApiError(422, "ValidationError", "title: must not be blank")
    _check_attributes(ctx, req.attributes)
    counts = await run_in_threadpool(_upsert, ctx, req, photo)
    return UpsertOut(**counts, products=len(ctx.engine))


def _delete(ctx: ServiceContext, ids: list[str]) -> int:
    with _write_lock:
        store = ctx.engine.store
        photos = [store.get(i).image_path for i in ids if i in store]
        deleted = ctx.engine.delete(ids)
        _drop_unused_uploads(ctx, photos)  # uploads go with their product
        return deleted


@router.delete("/products/{product_id:path}", response_model=DeleteOut, responses=AUTH_ERRORS)
async def delete_product(ctx: Ctx, product_id: str) -> DeleteOut:
    deleted = await run_in_threadpool(_delete, ctx, [product_id])
    return DeleteOut(deleted=deleted, products=len(ctx.engine))


@router.delete("/products", response_model=DeleteOut, responses=AUTH_ERRORS)
async def delete_products(ctx: Ctx, body: DeleteRequest) -> DeleteOut:
    """Delete several products; if any id is unknown nothing is deleted (404 naming it)."""
    deleted = await run_in_threadpool(_delete, ctx, list(dict.fromkeys(body.ids)))
    return DeleteOut(deleted=deleted, products=len(ctx.engine))
