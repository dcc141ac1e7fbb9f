"""Dependencies shared by the routes: the service context, the bearer-token guard, page-size caps
and the engine call with a timeout."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from prodsearch.search.engine import Engine
from prodsearch.service.handlers import ApiError
from prodsearch.service.metrics import ServiceMetrics
from prodsearch.service.settings import Settings

T = TypeVar("T")


@dataclass
class ServiceContext:
    """What every request needs; one per app (``app.state.ctx``)."""

    engine: Engine
    settings: Settings
    metrics: ServiceMetrics
    interactions: Any = None  # InteractionLogger when settings.interaction_log is set


async def get_ctx(request: Request) -> ServiceContext:
    # async: a sync dependency would cost a threadpool hop per request
    return request.app.state.ctx


Ctx = Annotated[ServiceContext, Depends(get_ctx)]
_bearer = HTTPBearer(auto_error=False, description="The service's PRODSEARCH_API_TOKEN.")


async def require_token(
    ctx: Ctx, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Guard for writes: 403 when writes are disabled, 401 when the token is missing or wrong."""
    token = ctx.settings.api_token
    if token is None:
        raise ApiError(
            403, "WritesDisabled", "writes are disabled: start the service with PRODSEARCH_API_TOKEN set"
        )
    challenge = {"WWW-Authenticate": "Bearer"}
    if creds is None:
        raise ApiError(
            401, "Unauthorized", "missing bearer token: send 'Authorization: Bearer <token>'", challenge
        )
    if not hmac.compare_digest(creds.credentials.encode(), token.get_secret_value().encode()):
        raise ApiError(401, "Unauthorized", "wrong bearer token", challenge)


def page_size(k: int | None, offset: int, settings: Settings) -> int:
    """``k`` (defaulted) after checking both against the settings' caps; 422 naming the cap otherwise."""
    k = settings.default_k if k is None else k
    if k > settings.max_k:
        raise ApiError(422, "ValidationError", f"k: {k} exceeds the cap of {settings.max_k} (settings.max_k)")
    if offset > settings.max_offset:
        raise ApiError(
            422,
            "ValidationError",
            f"offset: {offset} exceeds the cap of {settings.max_offset} (settings.max_offset)",
        )
    return min(k, settings.max_k)


async def call_engine(ctx: ServiceContext, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a blocking engine call in the threadpool; 504 after ``settings.request_timeout_s``.

    The worker thread cannot be killed, so it finishes in the background; reads only, since a
    write that timed out would leave the client unsure whether it happened.
    """
    timeout = ctx.settings.request_timeout_s
    try:
        return await asyncio.wait_for(run_in_threadpool(fn, *args, **kwargs), timeout)
    except asyncio.TimeoutError as err:
        raise ApiError(
            504, "Timeout", f"no answer within {timeout:g} s (settings.request_timeout_s)"
        ) from err
