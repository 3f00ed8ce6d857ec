"""What the maintenance leader does, one component each: rescue jobs whose lease expired,
prune finished jobs past their retention, enqueue due cron ticks, and remove the artifact
folders of deleted jobs. Each works only while its process leads (Leader.leading)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import structlog

from pgcue.core import db, metrics
from pgcue.core.artifacts import LocalArtifacts
from pgcue.core.queue import Queue
from pgcue.workers.runtime.maintenance.leader import Leader

log = structlog.get_logger("pgcue.maintenance")


class _Duty:
    """Runs `step()` every `interval` seconds while the process leads; an unavailable
    database only delays the next step."""

    name = "duty"

    def __init__(self, queue: Queue, leader: Leader, interval: float) -> None:
        self.queue = queue
        self.leader = leader
        self.interval = interval

    async def step(self) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        while True:
            await self.leader.leading.wait()
            try:
                await self.step()
            except Exception as exc:
                if not db.unavailable(exc):
                    raise
                log.warning(f"{self.name} failed; will retry", error=db.describe(exc))
            await asyncio.sleep(self.interval)


class Rescuer(_Duty):
    name = "rescuer"

    async def step(self) -> None:
        rescued = await self.queue.upkeep.rescue()
        metrics.jobs_rescued(r.type for r in rescued)
        if rescued:
            log.warning(
                "rescued jobs whose lease expired", jobs=len(rescued), states=sorted({r.state for r in rescued})
            )


class Pruner(_Duty):
    name = "pruner"

    def __init__(self, queue: Queue, leader: Leader, interval: float, retention: float) -> None:
        super().__init__(queue, leader, interval)
        self.retention = retention

    async def step(self) -> None:
        pruned = await self.queue.upkeep.prune(self.retention)
        if pruned:
            log.info("pruned finished jobs", jobs=pruned)


class Scheduler(_Duty):
    name = "scheduler"

    async def step(self) -> None:
        enqueued = await self.queue.upkeep.enqueue_due_schedules()
        if enqueued:
            log.info("enqueued scheduled jobs", jobs=enqueued)


class ArtifactSweeper(_Duty):
    """Removes the folders of deleted jobs (queued by the jobs delete trigger in the same
    transaction as the delete), then forgets them: a crash in between only means the
    removal is done again. Once an hour it also removes folders no job owns (a job deleted
    before the trigger existed) that are older than ORPHAN_AGE."""

    name = "artifact-sweeper"
    ORPHAN_SWEEP_SECONDS = 3600.0
    ORPHAN_AGE = 600.0

    def __init__(self, queue: Queue, leader: Leader, interval: float, store: LocalArtifacts) -> None:
        super().__init__(queue, leader, interval)
        self.store = store
        self._next_orphan_sweep = time.monotonic() + 60.0

    async def step(self) -> None:
        while True:
            gone = await self.queue.upkeep.pending_artifact_deletions(500)
            if not gone:
                break
            for job_id in gone:
                await asyncio.to_thread(self.store.discard, job_id)
            await self.queue.upkeep.forget_artifact_deletions(gone)
            log.info("removed artifacts of deleted jobs", jobs=len(gone))
            if len(gone) < 500:
                break
        if time.monotonic() >= self._next_orphan_sweep:
            self._next_orphan_sweep = time.monotonic() + self.ORPHAN_SWEEP_SECONDS
            await self.sweep_orphans()

    def _old_folders(self) -> list[uuid.UUID]:
        root = Path(self.store.root)
        if not root.is_dir():
            if root.exists():
                log.warning("the artifacts directory is not a directory; no orphans can be swept", path=str(root))
            return []
        now = time.time()
        candidates: list[uuid.UUID] = []
        for entry in os.scandir(root):
            try:
                job_id = uuid.UUID(entry.name)
            except ValueError:
                continue
            if entry.is_dir() and now - entry.stat().st_mtime > self.ORPHAN_AGE:
                candidates.append(job_id)
        return candidates

    async def sweep_orphans(self) -> int:
        candidates = await asyncio.to_thread(self._old_folders)
        removed = 0
        for i in range(0, len(candidates), 1000):
            chunk = candidates[i : i + 1000]
            alive = await self.queue.upkeep.existing_jobs(chunk)
            for job_id in chunk:
                if job_id not in alive:
                    await asyncio.to_thread(self.store.discard, job_id)
                    removed += 1
        if removed:
            log.info("removed artifact folders no job owns", folders=removed)
        return removed
