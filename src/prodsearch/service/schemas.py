"""Request and response models of the HTTP API (separate models for what comes in and goes out)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

Mode = Literal["hybrid", "lexical", "text", "image"]
Fusion = Literal["rrf", "weighted", "calibrated"]
By = Literal["fused", "image", "text"]
AttrValue = str | int | float | bool
#: Most product ids one recommend or delete request may name.
MAX_IDS = 100


class _In(BaseModel):
    # Unknown fields are an error that names them, not silently ignored.
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _within_limits(cls, data: Any) -> Any:
        # Depth, size, number range and Unicode limits, also for bodies FastAPI parses itself
        # (issue 9: a lone surrogate, 10**400 or 1000-deep nesting used to end in a 500).
        from prodsearch.service.bodies import check_json

        try:
            check_json(data, "")
        except ValueError as err:
            raise PydanticCustomError("limits", str(err)) from None
        return data


class SearchRequest(_In):
    """A search by text, image (base64 in JSON, or a file in a multipart upload) or both."""

    text: str | None = Field(None, description="Query text.", examples=["red summer dress"])
    image: str | None = Field(None, description="Query photo as base64 (JSON requests only).")
    k: int | None = Field(
        None, ge=1, description="Page size (default from settings; capped by settings.max_k)."
    )
    offset: int = Field(0, ge=0, description="Results to skip (capped by settings.max_offset).")
    filters: dict[str, Any] | list[Any] | None = Field(
        None,
        description=(
            'Filter object, e.g. {"gender": "men"}, {"not": {"field": "category", "eq": "shoe"}} or '
            '{"field": "colour", "match": "grey"}. eq/in ignore case, accents and extra spaces ("grey" '
            'equals "Grey"); match is a token match for free-text attributes ("grey" matches "Light Grey"); '
            "range compares numbers; and/or/not combine."
        ),
    )
    mode: Mode = "hybrid"
    weights: dict[str, float] | None = Field(
        None, description="Per-signal weights: lexical, text, image, joint (default: the calibrated ones)."
    )
    fusion: Fusion | None = None  # None: calibrated where the index has a calibration, else rrf
    image_weight: float = Field(0.5, ge=0.0, le=1.0, description="Image share of a text+image query.")
    negative: str | None = Field(None, description="Text whose meaning results should move away from.")
    explain: bool = False
    facets: list[str] | bool | None = Field(
        None, description="Facet fields to count over the candidates (true: all)."
    )
    crop: list[float] | None = Field(
        None,
        min_length=4,
        max_length=4,
        description="Search only this box of the photo: [x0, y0, x1, y1] as fractions of its width and height.",
    )
    regions: Literal["off", "auto"] = Field(
        "off",
        description="auto: a scene photo (a room, an outfit) is searched region by region and the results "
        "merged, finding the products in it; photo only, no text.",
    )


class SessionEventIn(_In):
    product_id: str = Field(..., min_length=1, max_length=512)
    event: Literal["viewed", "clicked", "disliked"] = "viewed"
    timestamp: str | float | None = Field(None, description="ISO 8601 or epoch s; none: their order counts.")


class RecommendRequest(_In):
    positive: list[str] = Field(
        default_factory=list, max_length=MAX_IDS, description="Product ids the shopper liked."
    )
    negative: list[str] = Field(
        default_factory=list, max_length=MAX_IDS, description="Product ids the shopper disliked."
    )
    session: list[SessionEventIn] = Field(
        default_factory=list,
        max_length=MAX_IDS,
        description="The session's recent events, oldest first, weighed by recency (exponential decay).",
    )
    half_life: float | None = Field(
        None, gt=0, description="Recency half-life: seconds with timestamps, else events (default 600 s / 3)."
    )
    by: By = "fused"
    k: int | None = Field(None, ge=1)
    filters: dict[str, Any] | list[Any] | None = None
    explain: bool = False

    @model_validator(mode="after")
    def _something_to_recommend_from(self) -> RecommendRequest:
        if not self.positive and not any(e.event != "disliked" for e in self.session):
            raise ValueError("give at least one positive product id or a viewed/clicked session event")
        return self


class ProductIn(_In):
    """A product to add or replace. ``image`` (base64) is for JSON requests; multipart sends a file."""

    id: str = Field(
        ...,
        min_length=1,
        max_length=256,
        description="Product id: no '/' or control characters (it is part of the product's URL).",
    )
    title: str = Field(..., min_length=1, max_length=2000)
    text: dict[str, str] = Field(default_factory=dict, description="Free-text fields, e.g. description.")
    attributes: dict[str, AttrValue] = Field(default_factory=dict, description="Filterable attributes.")
    image: str | None = Field(None, description="Photo as base64 (JSON requests only).")
    keep_image: bool = Field(True, description="On update without a new image, keep the stored photo.")

    @field_validator("id")
    @classmethod
    def _id_fits_a_url(cls, v: str) -> str:
        bad = sorted({c for c in v if c == "/" or ord(c) < 32 or ord(c) == 127})
        if bad:
            raise ValueError(
                f"product id {v!r} contains {', '.join(map(repr, bad))}: ids may not contain '/' or "
                "control characters, since the id is part of the product's URL (/products/ID)"
            )
        return v


class DeleteRequest(_In):
    ids: list[str] = Field(..., min_length=1, max_length=MAX_IDS)


class ExplanationOut(BaseModel):
    contributions: dict[str, float]
    similarities: dict[str, float]
    matched_terms: list[str]
    matched_attributes: dict[str, str]


class ResultOut(BaseModel):
    id: str
    score: float
    rank: int
    title: str
    attributes: dict[str, Any]
    text: dict[str, str]
    image_url: str | None
    explanation: ExplanationOut | None = None


class FacetValue(BaseModel):
    value: str
    count: int


class MatchOut(BaseModel):
    """Whether a text query has a close match (search/relevance.py); photo queries are not judged."""

    weak: bool = Field(description="True when no signal found a close match ('no close match').")
    reason: str
    lexical_hits: bool | None = None
    best_similarity: float | None = Field(None, description="Best text-vector similarity of the query.")
    cutoff: float | None = Field(None, description="The index's calibrated cutoff (gibberish queries' best).")


class SearchResponseOut(BaseModel):
    results: list[ResultOut]
    mode: str
    signals: list[str]
    candidates: int
    timings_ms: dict[str, float]
    facets: dict[str, list[FacetValue]] | None = None
    match: MatchOut | None = None
    model: str | None = Field(None, description="The model version that answered (prodsearch models).")


class ProductOut(BaseModel):
    id: str
    title: str
    text: dict[str, str]
    attributes: dict[str, Any]
    image_url: str | None


class FacetsOut(BaseModel):
    facets: dict[str, list[FacetValue]]


class UpsertOut(BaseModel):
    added: int
    updated: int
    unchanged: int
    products: int = Field(..., description="Products in the index after the write.")


class DeleteOut(BaseModel):
    deleted: int
    products: int


class HealthOut(BaseModel):
    status: Literal["ok"]
    products: int
    embedder: str | None
    aligned: bool
    attributes: list[str]
    writes_enabled: bool
    limits: dict[str, float] = Field(
        ..., description="Client-facing caps: max_k, max_offset, max_upload_bytes, ..."
    )


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody
