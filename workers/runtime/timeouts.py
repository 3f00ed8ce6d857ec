"""The timeout sweep: cancels every attempt past its type's timeout. One sweep over the
running jobs a few times per shortest timeout (at most once a second) instead of an
asyncio.timeout per job, whose timer handle per attempt was ~14 % of a busy worker's CPU
(py-spy, `make bench` drain). A timeout fires up to a second late. Each sweep also marks
the worker's loop alive for its /healthz."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgcue.workers.runtime.worker import Worker


class TimeoutSweep:
    name = "timeouts"

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        shortest = min((spec.timeout_seconds for spec in worker.specs.values()), default=4)
        self.interval = min(1.0, max(0.05, shortest / 4))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self.worker.ticked = now  # the loop is alive (the metrics port's /healthz reads it)
            for running in list(self.worker.running.values()):
                if now >= running.deadline and running.in_handler and not running.timed_out and running.task:
                    running.timed_out = True
                    running.task.cancel()
