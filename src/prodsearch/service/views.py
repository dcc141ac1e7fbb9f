"""Engine objects -> response models (the engine's absolute image paths become ``image_url``s)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any
from urllib.parse import quote

from prodsearch.search.results import SearchResponse, SearchResult
from prodsearch.service.schemas import (
    ExplanationOut,
    FacetValue,
    MatchOut,
    ProductOut,
    ResultOut,
    SearchResponseOut,
)


def image_url(root_path: str, product_id: str, image_path: str | None) -> str | None:
    """URL of ``GET /products/{id}/image``; relative to the app's mount point (``root_path``)."""
    if not image_path:
        return None
    return f"{root_path}/products/{quote(product_id, safe='')}/image"


def facets_out(facets: dict[str, list[tuple[str, int]]]) -> dict[str, list[FacetValue]]:
    return {f: [FacetValue(value=str(v), count=int(c)) for v, c in vals] for f, vals in facets.items()}


def result_out(r: SearchResult, root_path: str) -> ResultOut:
    expl = ExplanationOut(**asdict(r.explanation)) if r.explanation is not None else None
    return ResultOut(
        id=r.id,
        score=r.score,
        rank=r.rank,
        title=r.title,
        attributes=r.attributes,
        text=r.text,
        image_url=image_url(root_path, r.id, r.image_path),
        explanation=expl,
    )


def search_out(
    resp: SearchResponse, root_path: str, extra_timings: dict[str, float] | None = None, match: Any = None
) -> SearchResponseOut:
    """``match``: a :class:`prodsearch.search.relevance.MatchStrength`, or None when not judged."""
    timings = {**resp.timings, **(extra_timings or {})}
    return SearchResponseOut(
        results=[result_out(r, root_path) for r in resp.results],
        mode=resp.mode,
        signals=list(resp.signals),
        candidates=resp.candidates,
        timings_ms={k: round(v * 1000, 3) for k, v in timings.items()},
        facets=facets_out(resp.facets) if resp.facets is not None else None,
        match=MatchOut(**match.to_dict()) if match is not None else None,
        model=resp.model,
    )


def product_out(p: Any, root_path: str) -> ProductOut:
    return ProductOut(
        id=p.id,
        title=p.title,
        text=p.text,
        attributes=p.attributes,
        image_url=image_url(root_path, p.id, p.image_path),
    )
