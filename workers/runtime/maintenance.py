"""Rescuer, pruner and scheduler, run by one process of the fleet at a time.

Every worker (and the API) runs this loop; the one that takes a session-level advisory
lock on its own connection leads, the others retry now and then. If the leader dies, its
connection closes, the lock goes with it and another process takes over.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import structlog
from pgcue.core import db, metrics
from pgcue.core.config import Settings
from pgcue.core.db import DB_ERRORS
from pgcue.core.queue import Queue

log = structlog.get_logger("pgcue.maintenance")


class Maintenance:
    def __init__(self, settings: Settings, queue: Queue) -> None:
        self.settings = settings
        self.queue = queue
        self.leading = False

    async def run(self) -> None:
        s = self.settings
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await db.connect(s, application_name="pgcue-maintenance")
                while not await self._try_lead(conn):
                    await asyncio.sleep(s.rescue_interval)
                self.leading = True
                log.info("leading maintenance")
                await self._lead(conn)
            except DB_ERRORS as exc:
                if self.leading:
                    log.warning("maintenance leadership lost", error=str(exc))
                await asyncio.sleep(s.rescue_interval)
            finally:
                self.leading = False
                if conn is not None and not conn.is_closed():
                    conn.terminate()

    async def _try_lead(self, conn: asyncpg.Connection) -> bool:
        row = await self.queue.sql.fetchrow(conn, "try_maintenance_lock")
        return bool(row and row["acquired"])

    async def _lead(self, conn: asyncpg.Connection) -> None:
        s = self.settings
        now = time.monotonic()
        next_rescue = next_prune = now
        tick = min(1.0, s.rescue_interval)  # schedules may tick every second
        while not conn.is_closed():
            enqueued = await self.queue.enqueue_due_schedules()
            if enqueued:
                log.info("enqueued scheduled jobs", jobs=enqueued)
            if time.monotonic() >= next_rescue:
                rescued = await self.queue.rescue()
                metrics.jobs_rescued(r["type"] for r in rescued)
                if rescued:
                    log.warning(
                        "rescued jobs whose lease expired", jobs=len(rescued), states={r["state"] for r in rescued}
                    )
                next_rescue = time.monotonic() + s.rescue_interval
            if time.monotonic() >= next_prune:
                pruned = await self.queue.prune(s.retention_seconds)
                if pruned:
                    log.info("pruned finished jobs", jobs=pruned)
                next_prune = time.monotonic() + s.prune_interval
            # The lock lives on this connection: a cheap round trip proves we still hold it.
            await self.queue.sql.execute(conn, "ping")
            await asyncio.sleep(tick)
