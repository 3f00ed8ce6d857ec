"""The heartbeat: extends the lease of every job the process holds in one statement, a few
times per lease, and learns of cancellations and of jobs it lost (rescued meanwhile)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from pgcue.core import db

if TYPE_CHECKING:
    from pgcue.workers.runtime.worker import Worker

log = structlog.get_logger("pgcue.worker")


class Heartbeat:
    name = "heartbeat"

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.interval = max(0.1, min((spec.lease_seconds for spec in worker.specs.values()), default=30) / 3)

    async def run(self) -> None:
        worker = self.worker
        beats = 0
        while True:
            await asyncio.sleep(self.interval)
            beats += 1
            try:
                if beats % 10 == 0:
                    await worker.refresh_policies()
                held = [(job_id, r.ctx.fence, r.spec.lease_seconds) for job_id, r in worker.running.items()]
                answer = await worker.queue.heartbeat(worker.worker_id, held)
            except Exception as exc:
                if not db.unavailable(exc):
                    raise
                log.warning("heartbeat failed", error=db.describe(exc))
                continue
            for job_id, _, _ in held:
                running = worker.running.get(job_id)
                if running is None:
                    continue  # finished meanwhile
                if job_id not in answer:
                    worker.lost(job_id)
                elif answer[job_id]:
                    running.ctx.request_cancel()
