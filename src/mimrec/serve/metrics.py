"""Prometheus metrics of the service (request counts and latencies by route, item counts), kept in
a registry of their own and exposed in the Prometheus text format at ``/metrics``.

With several worker processes (``mimrec serve --workers N``) the server sets
``PROMETHEUS_MULTIPROC_DIR`` to a fresh folder before the workers start: every worker then writes
its values there and ``/metrics``, whichever worker answers, reports the sum over all workers
(prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from mimrec.serve.scorer import Scorer

ROUTES = ("/v1/score", "/v1/items", "/v1/users", "/healthz", "/metrics", "/")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5)


def route_label(path: str) -> str:
    """A bounded route label: item and user ids are folded into the template."""
    if path.startswith("/v1/items/"):
        return ("/v1/items/{item_id}/similar" if path.rstrip("/").endswith("/similar")
                else "/v1/items/{item_id}")
    if path.startswith("/v1/users/"):
        return "/v1/users/{user_id}/history"
    return path if path in ROUTES else "other"


class ServiceMetrics:
    """Counters, latency histograms and gauges, plus the ASGI middleware that records them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        own: CollectorRegistry | None = self.registry
        if os.environ.get(MULTIPROC_ENV):  # values live in files shared by the workers
            from prometheus_client.multiprocess import MultiProcessCollector

            MultiProcessCollector(self.registry)
            own = None
        self.requests = Counter("mimrec_requests", "HTTP requests handled",
                                ["method", "route", "status"], registry=own)
        self.latency = Histogram("mimrec_request_seconds", "Request latency in seconds",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=own)
        self.items = Gauge("mimrec_items", "Items the service can score", ["kind"],
                           registry=own, multiprocess_mode="mostrecent")
        self.content_type = CONTENT_TYPE_LATEST

    def set_items(self, scorer: Scorer) -> None:
        cat = scorer.catalogue
        self.items.labels("trained").set(cat.num_trained)
        self.items.labels("added").set(cat.count - cat.num_trained)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """An ASGI middleware factory (for ``app.add_middleware``) recording every request."""
        metrics = self

        async def record(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            start = time.perf_counter()
            status = 500

            async def tracked_send(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, tracked_send)
            finally:
                route = route_label(scope["path"])
                metrics.requests.labels(scope["method"], route, str(status)).inc()
                metrics.latency.labels(route).observe(time.perf_counter() - start)

        return record
