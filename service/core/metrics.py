"""Prometheus collectors.

Names follow Prometheus conventions: a `pgcue_` prefix, base units (`_seconds`), `_total`
on counters, and bounded labels only: job type, job state, event kind, route template,
HTTP status. Never a job id, channel id or owner id.

This module holds what the worker and the API both count (job life, the listener); the
API's request and SSE metrics and the database-derived gauges are in pgcue.api.metrics,
a worker's slots in pgcue.workers.runtime.metrics. Three kinds of numbers, each exported
where it is known:
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

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

# Jobs run from milliseconds (echo) to hours (render, orchestrate): roughly ×2.5 steps
# from 10 ms to 6 h, 18 buckets, so p50/p95/p99 stay meaningful at either end.
DURATION_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 150, 300, 600, 1800, 3600, 7200, 21600,
)  # fmt: skip

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
