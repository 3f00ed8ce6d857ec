"""A worker process's own metrics: its running jobs, free slots and capacity per type, read
at scrape time, served with the process's counters on its metrics port, beside its
liveness (/healthz) for a container's health check and a Kubernetes liveness probe."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer

from pgcue.core.metrics import init_job_types


class WorkerState(Protocol):
    @property
    def limits(self) -> Mapping[str, int]: ...  # slots per type

    @property
    def busy(self) -> Mapping[str, int]: ...  # jobs held per type: running, or claimed ahead and waiting

    @property
    def in_handler(self) -> Mapping[str, int]: ...  # handlers running per type (at most its slots)


class Healthy(WorkerState, Protocol):
    def health(self) -> tuple[bool, str]: ...  # alive?, and why not


class WorkerCollector:
    """Running jobs, free slots and capacity per type of one worker process."""

    def __init__(self, worker: WorkerState) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        running = GaugeMetricFamily(
            "pgcue_worker_running_jobs",
            "Handlers this worker process is running (at most its concurrency).",
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
        ahead = GaugeMetricFamily(
            "pgcue_worker_claimed_ahead_jobs",
            "Jobs this worker process claimed ahead of its free slots, waiting for one (PGCUE_CLAIM_AHEAD_SECONDS).",
            labels=["type"],
        )
        for name, limit in sorted(self.worker.limits.items()):
            in_handler = self.worker.in_handler.get(name, 0)
            running.add_metric([name], in_handler)
            free.add_metric([name], max(0, limit - in_handler))
            slots.add_metric([name], limit)
            ahead.add_metric([name], max(0, self.worker.busy.get(name, 0) - in_handler))
        yield from (running, free, slots, ahead)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # a scrape is not news
        pass


def serve_worker(worker: Healthy, port: int, host: str = "127.0.0.1") -> None:
    """Expose this worker process's metrics on http://host:port/metrics, and its liveness
    on /healthz (200, or 503 when its event loop is stuck), from a daemon thread."""
    init_job_types(worker.limits)
    REGISTRY.register(WorkerCollector(worker))
    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            ok, detail = worker.health()
            body = json.dumps({"status": "ok" if ok else "unavailable", "detail": detail}).encode()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
            return [body]
        return metrics_app(environ, start_response)

    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

    httpd = make_server(host, port, app, Server, handler_class=_Quiet)
    threading.Thread(target=httpd.serve_forever, name="pgcue-metrics", daemon=True).start()
