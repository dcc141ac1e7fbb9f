"""``POST /events``: the web page (or a shop's front end) reports what a shopper did with a result,
appended to the opt-in interaction log (``PRODSEARCH_INTERACTION_LOG``, :mod:`prodsearch.interactions`).

The request model lives here with its route: it is the one body of the interaction log's schema.
"""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field, field_validator

from prodsearch.interactions.log import FUTURE_SLACK_S, parse_timestamp
from prodsearch.service.deps import Ctx
from prodsearch.service.handlers import ApiError
from prodsearch.service.schemas import ErrorOut, _In

router = APIRouter()
ERRORS = {s: {"model": ErrorOut} for s in (403, 413, 422)}


class EventIn(_In):
    """One shopper event: which result of which text query, what was done with it, optionally when."""

    product_id: str = Field(..., min_length=1, max_length=512, description="The product acted on.")
    event: Literal["view", "click", "add_to_cart", "purchase"] = "click"
    query: str = Field(..., min_length=1, description="The text query whose result it was.")
    session_id: str | None = Field(None, max_length=200, description="The shopper's session.")
    timestamp: str | float | None = Field(
        None, description="ISO 8601 or epoch seconds (default: when the service receives it)."
    )

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query must not be blank")
        return v.strip()


class EventOut(BaseModel):
    logged: int


@router.post("/events", response_model=EventOut, responses=ERRORS, tags=["interactions"])
async def post_event(ctx: Ctx, body: EventIn) -> EventOut:
    """Append one event to the interaction log (403 when the service logs no interactions)."""
    logger = ctx.interactions
    if logger is None:
        raise ApiError(
            403,
            "LoggingDisabled",
            "interaction logging is off: start the service with PRODSEARCH_INTERACTION_LOG set",
        )
    if len(body.query) > ctx.settings.max_text_chars:
        raise ApiError(
            422,
            "ValidationError",
            f"query: longer than {ctx.settings.max_text_chars} characters (settings.max_text_chars)",
        )
    if body.product_id not in ctx.engine.store:
        raise ApiError(422, "ValidationError", f"product_id: unknown product id {body.product_id!r}")
    now = time.time()
    ts = now
    if body.timestamp is not None:
        try:
            ts = parse_timestamp(str(body.timestamp))
        except ValueError as err:
            raise ApiError(422, "ValidationError", f"timestamp: {err}") from None
        if ts > now + FUTURE_SLACK_S:
            raise ApiError(422, "ValidationError", f"timestamp: {body.timestamp!r} is in the future")
    logger.event(body.product_id, body.event, query=body.query, session_id=body.session_id, timestamp=ts)
    return EventOut(logged=1)
