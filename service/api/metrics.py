"""GET /metrics for Prometheus, and the request counters of every API route.

`MetricsPlugin()` in create_app's plugins registers both: the /metrics route and the
middleware that counts each request by route template and status. The route awaits the
database snapshot (cached briefly, shared by concurrent scrapes) before it renders, since
prometheus_client collects synchronously.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Response, get
from litestar.config.app import AppConfig
from litestar.datastructures import State
from litestar.plugins import InitPluginProtocol
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from pgcue.core import metrics
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

UNMATCHED = "<unmatched>"
# The classic text format every Prometheus reads; Litestar appends the charset itself.
MEDIA_TYPE = "text/plain; version=0.0.4"


def _collectors(state: State) -> tuple[metrics.DatabaseCollector, CollectorRegistry]:
    """The app's database collector and the registry holding it, made on first scrape."""
    found = state.get("_metrics")
    if found is None:
        collector = metrics.DatabaseCollector()
        found = (collector, metrics.exposition_registry(collector))
        state["_metrics"] = found
    return found


@get("/metrics", opt={"exclude_from_auth": True}, include_in_schema=False)
async def metrics_endpoint(state: State) -> Response[bytes]:
    """Prometheus exposition: this process's counters and the queue's state in the database."""
    collector, registry = _collectors(state)
    await collector.refresh(state.queue)
    body = generate_latest(REGISTRY) + generate_latest(registry)
    return Response(body, media_type=MEDIA_TYPE)


def request_metrics(app: ASGIApp) -> ASGIApp:
    """Count each HTTP request by route template (never the raw path) and status."""

    # The labelled children, looked up once per (route, method[, status]): .labels() takes
    # a lock and builds its key on every call, which showed in the API's profile.
    counters: dict[tuple[str, str, int], Any] = {}
    timers: dict[tuple[str, str], Any] = {}

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        status = 500
        began = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            route = scope.get("path_template") or UNMATCHED
            method = str(scope.get("method", "GET"))
            counter = counters.get((route, method, status))
            if counter is None:
                counter = counters[route, method, status] = metrics.HTTP_REQUESTS.labels(
                    route=route, method=method, status=str(status)
                )
            timer = timers.get((route, method))
            if timer is None:
                timer = timers[route, method] = metrics.HTTP_SECONDS.labels(route=route, method=method)
            counter.inc()
            timer.observe(time.perf_counter() - began)

    return middleware


class MetricsPlugin(InitPluginProtocol):
    """Adds GET /metrics and the request-counting middleware (outermost, so requests an
    auth or validation layer refuses are counted too)."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.append(metrics_endpoint)
        app_config.middleware.insert(0, request_metrics)
        return app_config
