"""Prometheus collectors.

Names follow Prometheus conventions: a `pgcue_` prefix, base units (`_seconds`), `_total`
on counters, and bounded labels only: job type, job state, event kind, route template,
HTTP status. Never a job id, channel id or owner id.

Three kinds of numbers, each exported where it is known:
- events counted by the process they happen in (enqueued in whatever process enqueues,
  started/completed/failed/... and durations in the worker, rescued in the maintenance
  leader, requests and SSE in the API), on prometheus_client's default registry;
- a worker's own state (running jobs, free slots, capacity per type), read at scrape
  time by WorkerCollector;
- the queue's state in the database (jobs per type and state, oldest runnable age,
  vacuum horizon), read by DatabaseCollector with one query at most every few seconds,
  and exported by the API process only, so N workers do not multiply the load.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

# Jobs run from milliseconds (echo) to hours (render, orchestrate): roughly ×2.5 steps
# from 10 ms to 6 h, 18 buckets, so p50/p95/p99 stay meaningful at either end.
DURATION_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 150, 300, 600, 1800, 3600, 7200, 21600,
)  # fmt: skip
# API requests: milliseconds to a few seconds (SSE streams are long-lived; see docs).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

STATES = ("queued", "running", "completed", "failed", "cancelled")
EVENT_KINDS = ("job:status", "job:output", "job:progress", "stage:updated")

# --- job life (counted where it happens) -----------------------------------------------

JOBS_ENQUEUED = Counter(
    "pgcue_jobs_enqueued",
    "Jobs inserted into the queue (a repeated idempotency key is not counted).",
    ["type"],
)
JOBS_STARTED = Counter("pgcue_jobs_started", "Attempts started by a worker (claims).", ["type"])
JOBS_COMPLETED = Counter("pgcue_jobs_completed", "Jobs that completed successfully.", ["type"])
JOBS_FAILED = Counter(
    "pgcue_jobs_failed",
    "Jobs that failed for good (attempts spent or a permanent error).",
    ["type"],
)
JOBS_RETRIED = Counter(
    "pgcue_jobs_retried",
    "Failed attempts put back in the queue to retry after a backoff.",
    ["type"],
)
JOBS_CANCELLED = Counter(
    "pgcue_jobs_cancelled",
    "Running jobs that stopped because cancellation was requested.",
    ["type"],
)
JOBS_RESCUED = Counter(
    "pgcue_jobs_rescued",
    "Running jobs whose lease expired (their worker died or stalled).",
    ["type"],
)

JOB_RUN_SECONDS = Histogram(
    "pgcue_job_run_duration_seconds",
    "Time an attempt ran in its worker, from claim to outcome.",
    ["type"],
    buckets=DURATION_BUCKETS,
)
JOB_WAIT_SECONDS = Histogram(
    "pgcue_job_queue_wait_seconds",
    "Time a job waited from becoming runnable (run_at: enqueue, schedule or retry backoff) to its claim.",
    ["type"],
    buckets=DURATION_BUCKETS,
)

# --- worker processes ---------------------------------------------------------------------

LISTENER_CONNECTED = Gauge(
    "pgcue_listener_connected",
    "1 while this process's LISTEN connection is up, 0 while it reconnects.",
    ["component"],  # worker | api
)

# --- API --------------------------------------------------------------------------------

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
SSE_SUBSCRIBERS = Gauge("pgcue_sse_subscribers", "Open SSE subscriptions in this API process.")

for _kind in EVENT_KINDS:
    SSE_EVENTS_SENT.labels(kind=_kind)

_JOB_COUNTERS = (JOBS_ENQUEUED, JOBS_STARTED, JOBS_COMPLETED, JOBS_FAILED, JOBS_RETRIED, JOBS_CANCELLED, JOBS_RESCUED)
_OUTCOME_COUNTERS = {
    "completed": JOBS_COMPLETED,
    "failed": JOBS_FAILED,
    "queued": JOBS_RETRIED,
    "cancelled": JOBS_CANCELLED,
}


def init_job_types(types: Iterable[str]) -> None:
    """Export every per-type series at 0 for these types, so rates and alerts see a
    type from its first scrape rather than from its first event."""
    for name in types:
        for counter in _JOB_COUNTERS:
            counter.labels(type=name)
        JOB_RUN_SECONDS.labels(type=name)
        JOB_WAIT_SECONDS.labels(type=name)


def jobs_enqueued(types: Sequence[str]) -> None:
    """Count inserted jobs: `types` holds one entry per inserted job."""
    tally: dict[str, int] = {}
    for name in types:
        tally[name] = tally.get(name, 0) + 1
    for name, n in tally.items():
        JOBS_ENQUEUED.labels(type=name).inc(n)


@functools.cache
def _child(metric: Any, job_type: str) -> Any:
    """A metric's child for one job type, looked up once: `labels()` costs a lock and a
    dict lookup, and these are called for every job on the worker's hot path."""
    return metric.labels(type=job_type)


def job_started(job_type: str, wait_seconds: float) -> None:
    _child(JOBS_STARTED, job_type).inc()
    _child(JOB_WAIT_SECONDS, job_type).observe(max(0.0, wait_seconds))


def job_finished(job_type: str, state: str, run_seconds: float) -> None:
    """An attempt's recorded outcome: the job's new state (queued = will retry)."""
    counter = _OUTCOME_COUNTERS.get(state)
    if counter is not None:
        _child(counter, job_type).inc()
    _child(JOB_RUN_SECONDS, job_type).observe(max(0.0, run_seconds))


def jobs_rescued(types: Iterable[str]) -> None:
    for name in types:
        JOBS_RESCUED.labels(type=name).inc()


def listener_connected(component: str, up: bool) -> None:
    LISTENER_CONNECTED.labels(component=component).set(1 if up else 0)


# --- a worker's own state, read at scrape time ------------------------------------------


class WorkerState(Protocol):
    @property
    def limits(self) -> Mapping[str, int]: ...  # slots per type

    @property
    def busy(self) -> Mapping[str, int]: ...  # running jobs per type


class WorkerCollector:
    """Running jobs, free slots and capacity per type of one worker process."""

    def __init__(self, worker: WorkerState) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        running = GaugeMetricFamily(
            "pgcue_worker_running_jobs",
            "Jobs this worker process is running.",
            labels=["type"],
        )
        free = GaugeMetricFamily(
            "pgcue_worker_free_slots",
            "Concurrency slots free in this worker process.",
            labels=["type"],
        )
        slots = GaugeMetricFamily(
            "pgcue_worker_concurrency_slots",
            "Concurrency slots of this worker process.",
            labels=["type"],
        )
        for name, limit in sorted(self.worker.limits.items()):
            busy = self.worker.busy.get(name, 0)
            running.add_metric([name], busy)
            free.add_metric([name], max(0, limit - busy))
            slots.add_metric([name], limit)
        yield from (running, free, slots)


def serve_worker(worker: WorkerState, port: int, host: str = "0.0.0.0") -> None:
    """Expose this worker process's metrics on http://host:port/metrics (a daemon thread)."""
    init_job_types(worker.limits)
    REGISTRY.register(WorkerCollector(worker))
    start_http_server(port, addr=host)


# --- the queue's state in the database (API process only) -------------------------------


class DatabaseCollector:
    """Queue depth per type and state, oldest runnable age, and the vacuum horizon, from
    one query (service/sql/metrics_snapshot.sql) cached for `ttl` seconds.

    prometheus_client collects synchronously, so the async /metrics route awaits
    refresh() first and collect() only reads what it left. Concurrent scrapes share one
    query.
    """

    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self.rows: list[Mapping[str, Any]] = []
        self.ok = False
        self.query_seconds = 0.0
        self._at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self, queue: Any) -> None:
        """Re-read the snapshot through `queue` (a service.queue.Queue) unless it is fresh."""
        async with self._lock:
            if time.monotonic() - self._at < self.ttl:
                return
            began = time.monotonic()
            try:
                self.rows = list(await queue.sql.fetch(queue.pool, "metrics_snapshot"))
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
