"""Prometheus metrics of one app: request counts, request latency, and a histogram per search stage
(encode, ann, lexical, fuse, filter), as clip-retrieval does. Each app owns its registry, so several
apps (tests) never collide in the global one."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

STAGES = ("encode", "ann", "lexical", "fuse", "filter")
#: Seconds; search stages run from tens of microseconds (filter) to ~100 ms (image encode on CPU).
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """The metrics of one app instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "prodsearch_http_requests",
            "HTTP requests by route template, method and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "prodsearch_http_request_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.stage = Histogram(
            "prodsearch_search_stage_seconds",
            "Engine time per search stage.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.queries = Counter(
            "prodsearch_queries",
            "Engine queries by kind (text, image, text+image, similar, recommend).",
            ["kind"],
            registry=self.registry,
        )
        for s in STAGES:  # export every stage from the start, so dashboards see zeros, not gaps
            self.stage.labels(stage=s)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method=method, route=route, status=str(status)).inc()
        self.latency.labels(method=method, route=route).observe(seconds)

    def observe_query(self, kind: str, timings: Mapping[str, float]) -> None:
        """Record one engine call: ``timings`` maps stage name to seconds (unknown stages are kept too)."""
        self.queries.labels(kind=kind).inc()
        for stage, seconds in timings.items():
            self.stage.labels(stage=stage).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
