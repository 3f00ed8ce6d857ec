"""GET /metrics for Prometheus: the request and SSE metrics of the API process, and the
queue's state in the database (the API alone exports it, so N workers do not multiply
the query).

`MetricsPlugin()` in create_app's plugins registers both: the /metrics route and the
middleware that counts each request by route template and status. The route awaits the
database snapshot (cached briefly, shared by concurrent scrapes) before it renders, since
prometheus_client collects synchronously.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from litestar import Response, get
from litestar.config.app import AppConfig
from litestar.datastructures import State
from litestar.plugins import InitPluginProtocol
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from pgcue.core.metrics import init_job_types
from pgcue.core.queue import Queue
from pgcue.core.states import EventKind

# API requests: milliseconds to a few seconds (SSE streams are long-lived; see docs).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

HTTP_REQUESTS = Counter(
    "pgcue_http_requests",
    "API requests answered, by route template and status.",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "pgcue_http_request_duration_seconds",
    "API request latency, by route template.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
SSE_EVENTS_SENT = Counter("pgcue_sse_events_sent", "Events written to SSE subscribers, by kind.", ["kind"])
# What the streams wrote since /metrics was last read, by kind, in plain ints: a fan-out to
# 10,000 subscribers added to the Counter once per subscriber, and each .inc() takes a lock
# (7 % of the API's CPU in that fan-out). flush_sse_sent() adds them up when scraped.
SSE_SENT_TALLY: dict[str, int] = {}
SSE_SUBSCRIBERS = Gauge("pgcue_sse_subscribers", "Open SSE subscriptions in this API process.")

SSE_STALLED = Counter(
    "pgcue_sse_stalled_clients",
    "SSE streams ended because a write waited longer than PGCUE_SSE_WRITE_TIMEOUT (the client stopped reading).",
)
SSE_REFUSED = Counter(
    "pgcue_sse_refused_streams", "SSE streams refused (429) because the key had PGCUE_SSE_STREAMS_PER_KEY open."
)

for _kind in EventKind:
    SSE_EVENTS_SENT.labels(kind=_kind.value)


class DatabaseCollector:
    """Queue depth per type and state, oldest runnable age, and the vacuum horizon, from
    one query (sql/metrics_snapshot.sql, through Queue.fleet) cached for `ttl` seconds.

    prometheus_client collects synchronously, so the async /metrics route awaits
    refresh() first and collect() only reads what it left. Concurrent scrapes share one
    query.
    """

    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self.rows: list[dict[str, Any]] = []
        self.ok = False
        self.query_seconds = 0.0
        self._at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self, queue: Queue) -> None:
        """Re-read the snapshot through `queue` unless it is fresh."""
        async with self._lock:
            if time.monotonic() - self._at < self.ttl:
                return
            began = time.monotonic()
            try:
                self.rows = await queue.fleet.metrics_snapshot()
                self.ok = True
            except Exception:  # a scrape must still answer: pgcue_database_up says why not
                self.ok = False
            self.query_seconds = time.monotonic() - began
            self._at = time.monotonic()
        if self.ok:
            init_job_types({row["type"] for row in self.rows if row["type"] is not None})

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("pgcue_database_up", "1 if the last metrics query succeeded.")
        up.add_metric([], 1 if self.ok else 0)
        took = GaugeMetricFamily(
            "pgcue_database_metrics_query_seconds",
            "Time the last metrics query took.",
        )
        took.add_metric([], self.query_seconds)
        yield from (up, took)
        if not self.ok:
            return
        jobs = GaugeMetricFamily("pgcue_jobs", "Jobs in the table, by type and state.", labels=["type", "state"])
        oldest = GaugeMetricFamily(
            "pgcue_oldest_runnable_job_age_seconds",
            "Age of the oldest queued job whose run_at has passed (0 when none waits).",
            labels=["type"],
        )
        xact = GaugeMetricFamily(
            "pgcue_database_oldest_transaction_seconds",
            "Age of the oldest open transaction holding a snapshot in this database (holds back vacuum).",
        )
        xmin = GaugeMetricFamily(
            "pgcue_database_xmin_age_xids",
            "Age in transaction ids of the oldest xmin held by a backend, replication slot or prepared transaction.",
        )
        paused = GaugeMetricFamily("pgcue_job_type_paused", "1 while claims of the type are paused.", labels=["type"])
        limit = GaugeMetricFamily(
            "pgcue_job_type_limit",
            "A type's scheduling limit: global (running in the fleet), channel (running per channel), "
            "rate (starts per rate period); absent when unlimited.",
            labels=["type", "limit"],
        )
        paused_channels = GaugeMetricFamily("pgcue_paused_channels", "Channels whose claims are paused.")
        for row in self.rows:
            if row["type"] is None:
                continue
            jobs.add_metric([row["type"], row["state"]], row["jobs"])
            if row["state"] == "queued":
                oldest.add_metric([row["type"]], row["oldest_runnable_seconds"])
                paused.add_metric([row["type"]], 1 if row["paused"] else 0)
                for name, key in (
                    ("global", "global_concurrency"),
                    ("channel", "channel_concurrency"),
                    ("rate", "rate_limit"),
                ):
                    if row[key] is not None:
                        limit.add_metric([row["type"], name], row[key])
        if self.rows:
            xact.add_metric([], self.rows[0]["oldest_xact_seconds"])
            xmin.add_metric([], self.rows[0]["xmin_age_xids"])
            paused_channels.add_metric([], self.rows[0]["paused_channels"])
        yield from (jobs, oldest, xact, xmin, paused, limit, paused_channels)


def exposition_registry(*collectors: Any) -> CollectorRegistry:
    """A registry holding these collectors alone (the default one holds the rest)."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return registry


UNMATCHED = "<unmatched>"
# The classic text format every Prometheus reads; Litestar appends the charset itself.
MEDIA_TYPE = "text/plain; version=0.0.4"


def _collectors(state: State) -> tuple[DatabaseCollector, CollectorRegistry]:
    """The app's database collector and the registry holding it, made on first scrape."""
    found = state.get("_metrics")
    if found is None:
        collector = DatabaseCollector()
        found = (collector, exposition_registry(collector))
        state["_metrics"] = found
    return found


def flush_sse_sent() -> None:
    """Move SSE_SENT_TALLY into SSE_EVENTS_SENT (called on the event loop, as the streams are)."""
    for kind, n in SSE_SENT_TALLY.items():
        if n:
            SSE_EVENTS_SENT.labels(kind=kind).inc(n)
            SSE_SENT_TALLY[kind] = 0


@get("/metrics", opt={"exclude_from_auth": True}, include_in_schema=False)
async def metrics_endpoint(state: State) -> Response[bytes]:
    """Prometheus exposition: this process's counters and the queue's state in the database."""
    flush_sse_sent()
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
                counter = counters[route, method, status] = HTTP_REQUESTS.labels(
                    route=route, method=method, status=str(status)
                )
            timer = timers.get((route, method))
            if timer is None:
                timer = timers[route, method] = HTTP_SECONDS.labels(route=route, method=method)
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
