"""A worker's own end: after `max_jobs` jobs claimed and finished, or `idle_exit` seconds
with nothing running (`pgcue worker --max-jobs N --idle-exit S`). That is the pod of a
Kubernetes Job (a KEDA ScaledJob): it runs its job to the end and exits 0, so no
autoscaler ever picks it to stop mid-job; one that finds nothing to claim (another pod
took the job) exits when idle."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from pgcue.workers.runtime.worker import Worker

log = structlog.get_logger("pgcue.worker")


class Lifetime:
    name = "lifetime"

    def __init__(self, worker: Worker, interval: float = 0.2) -> None:
        self.worker = worker
        self.interval = interval

    async def run(self) -> None:
        worker = self.worker
        idle_since = time.monotonic()
        while not worker.stopping:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            if worker.running:
                idle_since = now
                continue
            claimed = worker.stats["claimed"]
            if worker.max_jobs is not None and claimed >= worker.max_jobs:
                worker.log.info("ran its jobs; exiting", jobs=claimed)
                worker.request_stop()
                return
            if worker.idle_exit is not None and now - idle_since >= worker.idle_exit:
                worker.log.info("idle; exiting", idle_seconds=worker.idle_exit, jobs=claimed)
                worker.request_stop()
                return
