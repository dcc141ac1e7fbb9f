"""Admin routes (bearer token): which model the service answers with, and switching it without a
restart (issue 12).

``POST /admin/reload`` makes the running engine serve the registry's served version (after
``prodsearch models promote|rollback`` or ``prodsearch refresh`` in another process), or the
``version`` given: a candidate only if its evaluation beat the served model, a version served
before at any time (a rollback). The switch (:func:`prodsearch.registry.swap.switch_to`) builds
nothing in the request path that searches wait for: they keep answering from the old model until
one short exclusive section swaps vectors, query encoder and fusion together.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from prodsearch.service.deps import Ctx, require_token
from prodsearch.service.routes import ERRORS

router = APIRouter(prefix="/admin", dependencies=[Depends(require_token)], tags=["admin"])
AUTH_ERRORS = {**ERRORS, 401: ERRORS[400], 403: ERRORS[400]}


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str | None = Field(
        None, description="Version to serve (default: the registry's served version).", max_length=32
    )


class ModelOut(BaseModel):
    served: str | None = Field(description="The model version this service answers with.")
    registry_served: str | None = Field(description="The version the index's registry names as served.")
    versions: list[dict[str, Any]] = Field(description="Registered versions: version, status, parent.")


class ReloadOut(BaseModel):
    switched: bool
    served: str | None
    previous: str | None
    encoded: int = Field(
        description="Products encoded during the switch (written since the target's vectors were built)."
    )
    seconds: float
    swap_ms: float = Field(description="How long searches were held for the swap itself.")


def _model_out(ctx: Any) -> ModelOut:
    from prodsearch.registry.store import Registry

    reg = Registry(ctx.engine.root)
    return ModelOut(
        served=ctx.engine.model_version,
        registry_served=reg.served,
        versions=[{"version": v.version, "status": v.status, "parent": v.parent} for v in reg.versions()],
    )


@router.get("/model", response_model=ModelOut, responses=AUTH_ERRORS)
async def model(ctx: Ctx) -> ModelOut:
    """The served model version and the registered ones."""
    return await run_in_threadpool(_model_out, ctx)


@router.post("/reload", response_model=ReloadOut, responses=AUTH_ERRORS)
async def reload(ctx: Ctx, body: ReloadRequest | None = None) -> ReloadOut:
    """Serve the registry's served version (or ``version``) without a restart; searches go on."""

    def run() -> dict[str, Any]:
        from prodsearch.errors import ConfigError
        from prodsearch.registry.refresh import promote_if_better
        from prodsearch.registry.store import Registry
        from prodsearch.registry.swap import switch_to

        reg = Registry(ctx.engine.root)
        target = (body.version if body else None) or reg.served
        if target is None:
            raise ConfigError(f"index {ctx.engine.root} has no registered model version to serve")
        if body and body.version and reg.get(target).status == "candidate":
            res = promote_if_better(ctx.engine, reg, target)
            if not res["promoted"]:
                raise ConfigError(f"version {target} was not better than {res['served']} beyond the noise")
            return res["switch"]
        action = "rollback" if target == reg.previous_served() else "reload"
        return switch_to(ctx.engine, target, action=action, reg=reg)

    rep = await run_in_threadpool(run)
    return ReloadOut(
        switched=rep["switched"],
        served=ctx.engine.model_version,
        previous=rep["from"],
        encoded=rep["encoded"],
        seconds=rep["seconds"],
        swap_ms=rep["swap_ms"],
    )
