"""A worker process's own metrics: its running jobs, free slots and capacity per type, read
at scrape time, served with the process's counters on its metrics port."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from pgcue.core.metrics import init_job_types


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


def serve_worker(worker: WorkerState, port: int, host: str = "127.0.0.1") -> None:
    """Expose this worker process's metrics on http://host:port/metrics (a daemon thread)."""
    init_job_types(worker.limits)
    REGISTRY.register(WorkerCollector(worker))
    start_http_server(port, addr=host)
