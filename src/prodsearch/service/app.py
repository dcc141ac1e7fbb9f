"""The FastAPI app: ``create_app(index_or_engine)`` for tests and embedding, ``run_server`` for
``prodsearch serve``. One app serves the JSON API, the OpenAPI docs (/docs), Prometheus metrics
(/metrics) and the shopper's web page (/)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import prodsearch
from prodsearch.search.engine import Engine
from prodsearch.service import admin, events, routes, writes
from prodsearch.service.deps import ServiceContext
from prodsearch.service.handlers import install_handlers
from prodsearch.service.limits import BodyLimitMiddleware
from prodsearch.service.metrics import ServiceMetrics
from prodsearch.service.schemas import ProductIn, SearchRequest
from prodsearch.service.settings import Settings, load_settings

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


class MetricsMiddleware:
    """Count every request by route *template* (``/products/{product_id}``), so labels stay few."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path_format", None)  # {id:path} -> {id}
            if route is None:
                route = "/static" if scope["path"].startswith("/static/") else "unmatched"
            self.metrics.observe_request(scope["method"], route, status, time.perf_counter() - start)


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """OpenAPI with the models of the JSON-or-multipart bodies (parsed by hand) in the components."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (SearchRequest, ProductIn):
                s = model.model_json_schema(ref_template="#/components/schemas/{model}")
                comps.update(s.pop("$defs", {}))
                comps[model.__name__] = s
            app.openapi_schema = schema
        return app.openapi_schema

    return build


def create_app(
    index_dir_or_engine: str | Path | Engine, settings: Settings | None = None, *, embedder: Any = None
) -> FastAPI:
    """Build the app over an index folder (opened here, closed at shutdown) or an open :class:`Engine`
    (owned by the caller). ``settings`` default to the environment (:func:`load_settings`)."""
    settings = settings or load_settings()
    if isinstance(index_dir_or_engine, (str, os.PathLike)):
        engine, owned = Engine.open(index_dir_or_engine, embedder=embedder), True
    else:
        engine, owned = index_dir_or_engine, False

    interactions = None
    if settings.interaction_log is not None:
        from prodsearch.interactions.logger import InteractionLogger

        interactions = InteractionLogger(settings.interaction_log)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if interactions is not None:
            interactions.close()
        if owned:
            engine.close()

    app = FastAPI(
        title=settings.title,
        version=prodsearch.__version__,
        description="Multimodal product search: text, photo and text+photo queries with filters and facets.",
        lifespan=lifespan,
    )
    metrics = ServiceMetrics()
    app.state.ctx = ServiceContext(
        engine=engine, settings=settings, metrics=metrics, interactions=interactions
    )
    install_handlers(app)
    app.include_router(routes.router)
    app.include_router(writes.router)
    app.include_router(admin.router)  # model versions: /admin/model, /admin/reload
    app.include_router(events.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    # Added last = outermost: metrics see every response, including the body-limit 413s.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    return app


def run_server(
    index_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: Settings | None = None,
    *,
    embedder: Any = None,
) -> None:
    """Serve ``index_dir`` with uvicorn until interrupted; the model is loaded before the first request.
    ``embedder`` overrides the one rebuilt from the index's recipe (it must match the index)."""
    import uvicorn

    settings = settings or load_settings()
    engine = Engine.open(index_dir, embedder=embedder, lazy_model=False)
    try:
        app = create_app(engine, settings)
        log.warning(
            "serving %d products from %s at http://%s:%d (writes %s)",
            len(engine),
            index_dir,
            host,
            port,
            "enabled" if settings.writes_enabled else "disabled: set PRODSEARCH_API_TOKEN",
        )
        uvicorn.run(app, host=host, port=port, log_level=settings.log_level, access_log=False)
    finally:
        engine.close()
