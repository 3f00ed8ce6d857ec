"""Upkeep, done by the one maintenance leader of the fleet: leadership itself, rescue of
jobs whose lease expired, pruning of old finished jobs, the cron schedules, and the
removal of deleted jobs' artifact folders."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg

from pgcue.core.cron import Cron
from pgcue.core.models import NewJob, Rescued, Schedule
from pgcue.core.queue.enqueue import json_text

if TYPE_CHECKING:
    from pgcue.core.queue import Queue


Connect = Callable[[], Awaitable[asyncpg.Connection]]


class Leadership:
    """The maintenance lock (a session advisory lock), held on one connection for as long
    as this process leads: a pooled one taken out of the pool, or, behind a transaction
    pooler, a direct session of its own (a pooled connection there is a different server
    session at every transaction, which would keep the lock after we let go). Followers
    hold no connection for it. When the leader dies, its connection closes and the lock
    goes with it."""

    def __init__(self, queue: Queue, pool: asyncpg.Pool | None, conn: asyncpg.Connection) -> None:
        self.q = queue
        self._pool = pool  # None: a direct session, closed when leadership ends
        self._conn: asyncpg.Connection | None = conn

    async def check(self) -> None:
        """Raise if the lock's connection is gone (the lock with it)."""
        if self._conn is None or self._conn.is_closed():
            raise ConnectionError("the maintenance lock's connection closed")
        await self.q.sql.fetch(self._conn, "ping")

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._pool is None:
            try:
                await conn.close(timeout=5)  # the session ends, and its lock with it
            except Exception:
                conn.terminate()
            return
        try:
            if not conn.is_closed():
                await self.q.sql.fetch(conn, "release_maintenance_lock")
            await self._pool.release(conn)
        except Exception:
            conn.terminate()  # whatever state it is in, the lock is gone with it
            await self._pool.release(conn)


class Upkeep:
    def __init__(self, queue: Queue) -> None:
        self.q = queue

    async def try_lead(self, connect: Connect | None = None) -> Leadership | None:
        """Become the maintenance leader if no one is; None when someone else leads.

        `connect` opens a direct session (pgcue.core.db.connect): given when queries go
        through a transaction pooler, the lock is taken on a session of its own, opened
        only when the pooled check finds that nobody holds it."""
        pool = self.q.pool
        if not isinstance(pool, asyncpg.Pool):
            raise TypeError("leadership needs a pool")
        if connect is not None:
            held = await self.q.sql.fetchrow(pool, "maintenance_lock_held")
            if held and held["held"]:
                return None
            session = await connect()
            try:
                row = await self.q.sql.fetchrow(session, "try_maintenance_lock")
            except BaseException:
                session.terminate()
                raise
            if row and row["acquired"]:
                return Leadership(self.q, None, session)
            await session.close()
            return None
        conn = await pool.acquire()
        try:
            row = await self.q.sql.fetchrow(conn, "try_maintenance_lock")
        except BaseException:
            await pool.release(conn)
            raise
        if row and row["acquired"]:
            return Leadership(self.q, pool, conn)
        await pool.release(conn)
        return None

    async def rescue(self, limit: int = 1000) -> list[Rescued]:
        """Requeue (or fail) running jobs whose lease expired."""
        rows = await self.q.sql.fetch(self.q.pool, "rescue_jobs", limit)
        return [Rescued(r["id"], r["type"], r["state"]) for r in rows]

    async def prune(self, retention_seconds: float, batch: int = 5000) -> int:
        """Delete jobs finished longer ago than the retention, in batches; returns how many.
        Their artifact folders go next (pending_artifact_deletions)."""
        total = 0
        while True:
            row = await self.q.sql.fetchrow(self.q.pool, "prune_jobs", float(retention_seconds), batch)
            deleted = int(row["deleted"]) if row else 0
            total += deleted
            if deleted < batch:
                return total

    # --- schedules -------------------------------------------------------------------------

    async def register_schedules(self, schedules: Sequence[Schedule]) -> None:
        """Create or update periodic jobs; a new or re-timed one starts at its next tick."""
        if not schedules:
            return
        now = datetime.now(UTC)
        nexts = [Cron.parse(s.cron).next_after(now) for s in schedules]
        await self.q.sql.execute(
            self.q.pool,
            "upsert_schedules",
            [s.name for s in schedules],
            [s.cron for s in schedules],
            [s.type for s in schedules],
            [s.channel_id for s in schedules],
            [json_text(s.payload, "payload") for s in schedules],
            [s.priority for s in schedules],
            [s.catch_up for s in schedules],
            nexts,
        )

    async def enqueue_due_schedules(self) -> int:
        """Enqueue every due tick of every schedule; returns how many jobs were enqueued.

        Each tick's job carries the idempotency key 'schedule:<name>:<tick>', and due
        schedules are locked while they are handled, so a tick is enqueued once however
        many processes run this at once.
        """
        enqueued = 0
        async with self.q.transaction() as tx:
            for row in await tx.sql.fetch(tx.pool, "lock_due_schedules"):
                cron, now, tick = Cron.parse(row["cron"]), row["now"], row["next_run_at"]
                ticks = [tick]
                if row["catch_up"]:
                    while len(ticks) < 1000 and (following := cron.next_after(ticks[-1])) <= now:
                        ticks.append(following)
                    next_run = cron.next_after(ticks[-1])
                else:
                    next_run = cron.next_after(now)  # downtime: one run, not a burst
                await tx.enqueue_many(
                    [
                        NewJob(
                            type=row["type"],
                            channel_id=row["channel_id"],
                            payload=row["payload"],
                            priority=row["priority"],
                            idempotency_key=f"schedule:{row['name']}:{t.isoformat()}",
                        )
                        for t in ticks
                    ]
                )
                await tx.sql.execute(tx.pool, "advance_schedule", row["name"], next_run, ticks[-1])
                enqueued += len(ticks)
        return enqueued

    # --- artifacts of deleted jobs ----------------------------------------------------------

    async def pending_artifact_deletions(self, limit: int = 500) -> list[uuid.UUID]:
        """Jobs deleted (by DELETE, clear, prune or psql) whose artifact folder may still
        be on disk: remove each folder, then forget_artifact_deletions()."""
        rows = await self.q.sql.fetch(self.q.pool, "pending_artifact_deletions", limit)
        return [r["job_id"] for r in rows]

    async def forget_artifact_deletions(self, job_ids: Sequence[uuid.UUID]) -> None:
        if job_ids:
            await self.q.sql.execute(self.q.pool, "forget_artifact_deletions", list(job_ids))

    async def existing_jobs(self, job_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these ids are jobs (the orphan sweep: a folder whose job is gone)."""
        rows = await self.q.sql.fetch(self.q.pool, "job_channels", list(job_ids))
        return {r["id"] for r in rows}
