"""Typed search results returned by the engine (and serialised by the CLI and the HTTP service)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Explanation:
    """Why a product matched.

    ``contributions``: each signal's share of the fused score (sums to the fused score);
    ``similarities``: the raw score of each signal for this product (cosine for vector signals,
    BM25 for lexical); ``matched_terms``: query terms found in the product text;
    ``matched_attributes``: attribute values the query text mentions.
    """

    contributions: dict[str, float] = field(default_factory=dict)
    similarities: dict[str, float] = field(default_factory=dict)
    matched_terms: list[str] = field(default_factory=list)
    matched_attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class SearchResult:
    id: str
    score: float
    rank: int
    title: str
    attributes: dict[str, str] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    image_path: str | None = None
    explanation: Explanation | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.explanation is None:
            d.pop("explanation")
        return d


@dataclass
class SearchResponse:
    results: list[SearchResult]
    mode: str
    signals: list[str]
    candidates: int
    timings: dict[str, float] = field(default_factory=dict)
    facets: dict[str, list[tuple[str, int]]] | None = None
    model: str | None = None  # the model version that answered (prodsearch models)

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i: int) -> SearchResult:
        return self.results[i]

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": [r.to_dict() for r in self.results],
            "mode": self.mode,
            "signals": self.signals,
            "candidates": self.candidates,
            "model": self.model,
            "timings_ms": {k: round(v * 1000, 3) for k, v in self.timings.items()},
            **(
                {"facets": {f: [list(x) for x in v] for f, v in self.facets.items()}}
                if self.facets is not None
                else {}
            ),
        }
