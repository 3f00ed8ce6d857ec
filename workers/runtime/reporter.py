"""The reporter: writes the buffered progress, stage and output of every running job of the
process together, once per PGCUE_REPORT_INTERVAL (one statement however chatty the
handlers are), and on demand (ctx.stage(), a job's end)."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import structlog

from pgcue.core import db
from pgcue.core.models import ProgressReport
from pgcue.workers.runtime.context import JobContext

if TYPE_CHECKING:
    from pgcue.workers.runtime.worker import Worker

log = structlog.get_logger("pgcue.worker")


class ProgressReporter:
    name = "reporter"

    def __init__(self, worker: Worker, interval: float) -> None:
        self.worker = worker
        self.interval = interval
        self._dirty: dict[uuid.UUID, JobContext] = {}
        self._lock = asyncio.Lock()

    def touch(self, ctx: JobContext) -> None:
        self._dirty[ctx.id] = ctx

    async def flush(self) -> None:
        """Write what every touched job buffered. When the write fails, what was taken goes
        back into each job's buffer (before anything newer), so nothing is lost to a
        database blip; the error is raised for the caller to see."""
        async with self._lock:
            dirty, self._dirty = self._dirty, {}
            taken: list[tuple[JobContext, Any, ProgressReport]] = []
            for ctx in dirty.values():
                if ctx.lost or not ctx.has_pending():
                    continue
                pending = ctx.take_pending()
                progress, message, stage, events = pending
                taken.append((ctx, pending, ProgressReport(ctx.id, ctx.fence, progress, message, stage, events)))
            if not taken:
                return
            try:
                held = await self.worker.queue.report_progress([r for _, _, r in taken])
            except Exception as exc:
                if db.unavailable(exc):
                    for ctx, pending, _ in taken:
                        ctx.restore_pending(pending)
                    raise
                held = await self._one_by_one(taken)
            for _, _, report in taken:
                if report.job_id not in held:
                    self.worker.lost(report.job_id)

    async def settle(self, ctx: JobContext) -> None:
        """Before a job's outcome is recorded: wait until everything it buffered is written,
        riding out an unavailable database. Once the outcome is recorded the job is no
        longer running and a report of it is refused (fenced), so output restored after a
        failed write and written after the outcome would be lost. A write in flight (the
        lock is held) may hold the job's output: wait for it to end, or fail and restore."""
        backoff = 0.05
        while not ctx.lost:
            if self._lock.locked():
                async with self._lock:
                    pass
                continue
            if not ctx.has_pending():
                return
            try:
                await self.flush()
            except Exception as exc:
                if not db.unavailable(exc):  # not a blip, and not this job's values (flush handles those)
                    ctx.log.error("last progress report failed; recording the outcome anyway", error=str(exc))
                    return
                ctx.log.warning("last progress report failed; will retry", error=db.describe(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _one_by_one(self, taken: list[tuple[JobContext, Any, ProgressReport]]) -> set[uuid.UUID]:
        """After the database refused a batch for one job's values: each report alone; a
        report refused again is dropped (logged), the job's other writes go on."""
        held: set[uuid.UUID] = set()
        for ctx, pending, report in taken:
            try:
                held |= await self.worker.queue.report_progress([report])
            except Exception as exc:
                if db.unavailable(exc):
                    ctx.restore_pending(pending)
                    raise
                ctx.log.error("progress report refused by the database; dropped", error=db.describe(exc))
                held.add(report.job_id)
        return held

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception as exc:
                if not db.unavailable(exc):
                    raise
                log.warning("progress report failed; will retry", error=db.describe(exc))
