"""Read routes: search, similar, recommend, facets, products and their photos, health, metrics."""

from __future__ import annotations

import mimetypes
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse

from prodsearch.errors import QueryError
from prodsearch.search.regions import crop, multi_crop_search
from prodsearch.search.relevance import assess
from prodsearch.service.bodies import parse_json, read_model
from prodsearch.service.deps import Ctx, ServiceContext, call_engine, page_size
from prodsearch.service.handlers import ApiError
from prodsearch.service.limits import check_image
from prodsearch.service.schemas import (
    By,
    ErrorOut,
    FacetsOut,
    HealthOut,
    ProductOut,
    RecommendRequest,
    SearchRequest,
    SearchResponseOut,
)
from prodsearch.service.views import facets_out, product_out, search_out

router = APIRouter()
ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorOut} for s in (400, 404, 413, 422, 504)}
SEARCH_JSON_FIELDS = frozenset({"filters", "weights", "facets", "crop"})


def body_doc(model: str, json_field: str) -> dict[str, Any]:
    """OpenAPI request body of a route that takes ``model`` as JSON or as multipart with a photo."""
    form = {
        "image": {"type": "string", "format": "binary", "description": "Photo file."},
        json_field: {"type": "string", "description": f"JSON object with the fields of {model}."},
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}},
                "multipart/form-data": {"schema": {"type": "object", "properties": form}},
            },
        }
    }


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def _filters(raw: str | None) -> Any:
    return parse_json(raw, "query parameter 'filters'") if raw else None


def _check_text(ctx: ServiceContext, **texts: str | None) -> None:
    cap = ctx.settings.max_text_chars
    for name, value in texts.items():
        if value is not None and len(value) > cap:
            raise ApiError(
                422,
                "ValidationError",
                f"{name}: {len(value)} characters exceeds the cap of {cap} (settings.max_text_chars)",
            )


@router.post(
    "/search",
    response_model=SearchResponseOut,
    responses=ERRORS,
    tags=["search"],
    openapi_extra=body_doc("SearchRequest", "query"),
)
async def search(request: Request, ctx: Ctx) -> SearchResponseOut:
    """Search by text, photo or both: JSON (photo as base64) or multipart (photo as file)."""
    req, image_bytes = await read_model(request, SearchRequest, "query", SEARCH_JSON_FIELDS)
    k = page_size(req.k, req.offset, ctx.settings)
    _check_text(ctx, text=req.text, negative=req.negative)

    def run() -> tuple[Any, float, Any]:
        t = time.perf_counter()
        image = check_image(image_bytes, ctx.settings, "image") if image_bytes is not None else None
        if image is not None and req.crop is not None:
            image = crop(image, req.crop)
        decode = time.perf_counter() - t
        if req.regions == "auto":
            if image is None or req.text:
                raise QueryError("regions=auto searches a photo by its regions: send a photo and no text")
            resp = multi_crop_search(
                ctx.engine, image, k=k, offset=req.offset, filters=req.filters, explain=req.explain
            )
            return resp, decode, assess(ctx.engine, None, has_image=True)
        resp = ctx.engine.search(
            req.text,
            image,
            k=k,
            offset=req.offset,
            filters=req.filters,
            mode=req.mode,
            weights=req.weights,
            fusion=req.fusion,
            image_weight=req.image_weight,
            negative=req.negative,
            explain=req.explain,
            facets=req.facets,
        )
        t = time.perf_counter()
        match = assess(ctx.engine, req.text, mode=req.mode, has_image=image is not None)
        resp.timings["relevance"] = time.perf_counter() - t
        return resp, decode, match

    resp, decode, match = await call_engine(ctx, run)
    if ctx.interactions is not None and req.text and image_bytes is None and req.offset == 0:
        ctx.interactions.search(req.text, [r.id for r in resp.results])  # opt-in: what shoppers saw
    extra = {"decode": decode} if image_bytes is not None else {}
    kind = "+".join(n for n, v in (("text", req.text), ("image", image_bytes)) if v)
    ctx.metrics.observe_query(kind or "empty", {**resp.timings, **extra})
    return search_out(resp, _root(request), extra, match)


# ``:path`` ids: a catalog id may contain '/' (sent as is or as %2F, which the server decodes before
# routing); the routes with a suffix come before ``/products/{id}``, so a product whose id ends in
# "/similar" or "/image" is fetched with GET /products?id=ID (its photo and similar products are
# reachable as usual: "/products/x%2Fimage/image" routes to the id "x/image").
@router.get(
    "/products/{product_id:path}/similar", response_model=SearchResponseOut, responses=ERRORS, tags=["search"]
)
async def similar(
    request: Request,
    ctx: Ctx,
    product_id: str,
    by: By = "fused",
    k: Annotated[int | None, Query(ge=1)] = None,
    filters: Annotated[str | None, Query(description="Filter object as JSON.")] = None,
    explain: bool = False,
) -> SearchResponseOut:
    """Products that look like (``by=image``), read like (``text``) or both (``fused``) this one."""
    k = page_size(k, 0, ctx.settings)
    resp = await call_engine(
        ctx, ctx.engine.similar, product_id, by=by, k=k, filters=_filters(filters), explain=explain
    )
    ctx.metrics.observe_query("similar", resp.timings)
    return search_out(resp, _root(request))


@router.post("/recommend", response_model=SearchResponseOut, responses=ERRORS, tags=["search"])
async def recommend(request: Request, ctx: Ctx, body: RecommendRequest) -> SearchResponseOut:
    """Recommendations from liked (``positive``) and disliked (``negative``) product ids and/or a
    session's recent events (``session``, weighed by recency with ``half_life``)."""
    k = page_size(body.k, 0, ctx.settings)
    resp = await call_engine(
        ctx,
        ctx.engine.recommend,
        body.positive,
        body.negative,
        by=body.by,
        k=k,
        filters=body.filters,
        explain=body.explain,
        session=[e.model_dump(exclude_none=True) for e in body.session] or None,
        half_life=body.half_life,
    )
    ctx.metrics.observe_query("recommend", resp.timings)
    return search_out(resp, _root(request))


@router.get("/facets", response_model=FacetsOut, responses=ERRORS, tags=["search"])
async def facets(
    ctx: Ctx,
    fields: Annotated[list[str] | None, Query(description="Facet fields (default: all).")] = None,
    filters: Annotated[str | None, Query(description="Filter object as JSON.")] = None,
    top: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> FacetsOut:
    """Value counts per attribute over the products that pass ``filters``."""
    names = [f.strip() for raw in fields or [] for f in raw.split(",") if f.strip()] or None
    counts = await call_engine(ctx, ctx.engine.facets, names, filters=_filters(filters), top=top)
    return FacetsOut(facets=facets_out(counts))


@router.get(
    "/products/{product_id:path}/image", responses=ERRORS, tags=["products"], response_class=FileResponse
)
async def product_image(ctx: Ctx, product_id: str) -> FileResponse:
    """The product's photo: only the file recorded for it in the index, never an arbitrary path."""
    product = await call_engine(ctx, ctx.engine.get, product_id)
    path = Path(product.image_path) if product.image_path else None
    if path is None or not path.is_file():
        raise ApiError(404, "NotFound", f"product {product_id!r} has no photo")
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media, headers={"Cache-Control": "public, max-age=300"})


@router.get("/products/{product_id:path}", response_model=ProductOut, responses=ERRORS, tags=["products"])
async def get_product(request: Request, ctx: Ctx, product_id: str) -> ProductOut:
    return product_out(await call_engine(ctx, ctx.engine.get, product_id), _root(request))


@router.get("/products", response_model=ProductOut, responses=ERRORS, tags=["products"])
async def get_product_by_query(
    request: Request, ctx: Ctx, id: Annotated[str, Query(min_length=1, description="The product id.")]
) -> ProductOut:
    """The product with this id, whatever characters it holds (also an id ending in "/similar")."""
    return await get_product(request, ctx, id)


@router.get("/healthz", response_model=HealthOut, tags=["service"])
async def healthz(ctx: Ctx) -> HealthOut:
    e, st = ctx.engine, ctx.settings
    limits = {
        "max_k": st.max_k,
        "max_offset": st.max_offset,
        "max_text_chars": st.max_text_chars,
        "max_upload_bytes": st.max_upload_bytes,
        "max_image_pixels": st.max_image_pixels,
    }
    return HealthOut(
        status="ok",
        products=len(e),
        embedder=e.manifest.embedder.get("name"),
        aligned=e.aligned,
        attributes=list(e.attribute_fields),
        writes_enabled=st.writes_enabled,
        limits=limits,
    )


@router.get("/metrics", tags=["service"], response_class=Response)
async def metrics(ctx: Ctx) -> Response:
    """Prometheus text format: request counts and latencies, per-stage search latency histograms."""
    body, ctype = ctx.metrics.render()
    return Response(body, media_type=ctype)
