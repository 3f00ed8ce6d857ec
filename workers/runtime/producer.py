"""A producer per job type: claims jobs in batches up to the type's free slots and starts a
task for each. A notification on `<schema>_wake` wakes it at once; a poll every
PGCUE_POLL_INTERVAL is the fallback when one is lost."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from pgcue.core import db
from pgcue.workers.runtime.registry import TypeSpec

if TYPE_CHECKING:
    from pgcue.workers.runtime.worker import Worker

log = structlog.get_logger("pgcue.worker")


class Producer:
    def __init__(self, worker: Worker, spec: TypeSpec) -> None:
        self.worker = worker
        self.spec = spec
        self.name = f"claim:{spec.name}"
        self.wake = asyncio.Event()
        self.cursor = ""  # where the next claim starts round the channels
        self.maybe_more = False

    async def run(self) -> None:
        worker, spec, name = self.worker, self.spec, self.spec.name
        batch_limit = worker.batch_limit(name)
        backoff = 0.1
        rotations = 0  # claims in a row that found a full ring of channels but took no job
        while not worker.stopping:
            self.wake.clear()
            free = worker.room(name)
            if free > 0:
                want = min(free, batch_limit)
                limited = worker.limited.get(name, False)
                claim = asyncio.ensure_future(
                    worker.queue.claim(
                        name, want, worker.worker_id, spec.lease_seconds, cursor=self.cursor, limited=limited
                    )
                )
                try:
                    jobs = await asyncio.shield(claim)
                except asyncio.CancelledError:
                    # Stopped with a claim in flight: what it took is given back with the
                    # rest instead of staying held until its lease runs out.
                    await asyncio.wait({claim})
                    if not claim.cancelled() and claim.exception() is None:
                        worker.give_back([(job.id, job.fence) for job in claim.result()])
                    raise
                except Exception as exc:
                    if not db.unavailable(exc):
                        raise
                    log.warning("claim failed; backing off", job_type=name, error=db.describe(exc), backoff=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
                self.cursor = jobs.next_cursor
                # A claim that took anything may have left more behind: fair claims take a
                # share per channel, so a short batch is normal with work still queued, and
                # a limited type gets no more than its budget. So claim again while there
                # is room, and when a job ends; only an empty claim waits for a wake-up.
                self.maybe_more = bool(jobs) or limited
                for job in jobs:
                    worker.start_job(spec, job)
                if jobs and not limited and worker.room(name) > 0:
                    continue
                # Every channel visited had only delayed jobs: go on round the ring now,
                # a bounded number of times, rather than waiting a poll per ring.
                rotations = rotations + 1 if not jobs and jobs.ring_full else 0
                if 0 < rotations <= 10:
                    continue
            try:
                await asyncio.wait_for(self.wake.wait(), worker.settings.poll_interval)
            except TimeoutError:
                pass
