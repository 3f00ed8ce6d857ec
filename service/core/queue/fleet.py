"""The fleet: worker processes, the policies their claims obey, pauses, and what operators
and dashboards read (stats, the metrics snapshot)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pgcue.core.errors import UnknownJobType
from pgcue.core.models import (
    Channel,
    DepthRow,
    FailedAttempt,
    QueueRow,
    Stats,
    StuckJob,
    Throughput,
    TypePolicy,
    WorkerRow,
)
from pgcue.core.states import JobState

if TYPE_CHECKING:
    from pgcue.core.queue import Queue


class Fleet:
    def __init__(self, queue: Queue) -> None:
        self.q = queue

    async def notify(self, channel: str, payload: str) -> None:
        """Send one notification (a listener's probe)."""
        await self.q.sql.execute(self.q.pool, "notify", channel, payload)

    async def channel_owner(self, channel_id: str) -> str | None:
        """Who owns a channel (None: no such channel)."""
        row = await self.q.sql.fetchrow(self.q.pool, "find_channel_owner", channel_id)
        return None if row is None else str(row["owner_id"])

    # --- worker processes ----------------------------------------------------------------

    async def register_worker(self, worker_id: str, hostname: str, pid: int, types: Sequence[str], slots: int) -> None:
        await self.q.sql.execute(self.q.pool, "register_worker", worker_id, hostname, pid, sorted(types), slots)

    async def stop_worker(self, worker_id: str) -> None:
        await self.q.sql.execute(self.q.pool, "stop_worker", worker_id)

    async def limited_types(self, types: Sequence[str]) -> dict[str, bool]:
        """For each type, whether it has a fleet-wide, per-channel or rate limit: those
        claim under a per-type lock. Pauses need nothing: the claim itself reads them."""
        rows = await self.q.sql.fetch(self.q.pool, "type_policies", list(types))
        return {
            r["name"]: any(r[k] is not None for k in ("global_concurrency", "channel_concurrency", "rate_limit"))
            for r in rows
        }

    # --- pauses ----------------------------------------------------------------------------

    async def set_type_paused(self, job_type: str, paused: bool) -> None:
        """Pause (or resume) claims of a type across the fleet; running jobs finish."""
        row = await self.q.sql.fetchrow(self.q.pool, "set_type_paused", job_type, paused)
        if row is None or row["changed"] is None:
            raise UnknownJobType(job_type)
        if not paused:
            await self.q.sql.execute(self.q.pool, "notify_wake", job_type)

    async def set_channel_paused(self, channel_id: str, paused: bool, reason: str = "") -> None:
        """Pause (or resume) claims of every job in a channel; running jobs finish."""
        await self.q.sql.execute(self.q.pool, "set_channel_paused", channel_id, paused, reason)

    async def paused_channels(self) -> list[str]:
        return [r["channel_id"] for r in await self.q.sql.fetch(self.q.pool, "list_paused_channels")]

    async def channels(self, limit: int = 1000) -> list[Channel]:
        """Channels (with their owner and pause), by name; at most `limit`."""
        paused = {r["channel_id"]: r["reason"] for r in await self.q.sql.fetch(self.q.pool, "list_paused_channels")}
        rows = await self.q.sql.fetch(self.q.pool, "list_channels", limit)
        return [Channel(r["id"], r["owner_id"], r["id"] in paused, paused.get(r["id"], "")) for r in rows]

    # --- what operators read ---------------------------------------------------------------

    async def stats(self, channels: Sequence[str] | None, recent_seconds: float = 60.0) -> Stats:
        """Depth per type and state, policies and pauses over `channels` (None: the whole
        fleet, for an admin), and, for the whole fleet only, the workers seen recently."""
        scope = None if channels is None else list(channels)
        rows = await self.q.sql.fetch(self.q.pool, "channel_job_stats", scope, float(recent_seconds))
        depth = [
            DepthRow(r["type"], r["state"], int(r["jobs"]), r["oldest_runnable_seconds"])
            for r in rows
            if r["type"] is not None
        ]
        workers = int(rows[0]["workers"]) if rows else 0
        policies = [
            TypePolicy(
                type=p["type"],
                paused=p["paused"],
                global_concurrency=p["global_concurrency"],
                channel_concurrency=p["channel_concurrency"],
                rate_limit=p["rate_limit"],
                rate_period_seconds=p["rate_period_seconds"],
                running=int(p["running"]),
                queued=int(p["queued"]),
            )
            for p in await self.q.sql.fetch(self.q.pool, "list_type_policies", scope)
        ]
        paused = [c for c in await self.paused_channels() if scope is None or c in scope]
        return Stats(
            depth=depth,
            workers_recent=workers if scope is None else None,
            awaiting_approval=await self.q.stages.awaiting_approval(scope),
            policies=policies,
            paused_channels=paused,
        )

    async def metrics_snapshot(self) -> list[dict[str, Any]]:
        """One row per (type, state) with counts, policies and the vacuum horizon
        (sql/metrics_snapshot.sql); read by the API's /metrics at most every few seconds."""
        states = [s.value for s in JobState]
        return [dict(r) for r in await self.q.sql.fetch(self.q.pool, "metrics_snapshot", states)]

    # --- the operator view (each read on an index, bounded by the backlog or a window) ------

    async def queues(self, live_seconds: float = 60.0) -> list[QueueRow]:
        """Per type: queued (runnable, scheduled, waiting), running, oldest runnable age,
        live workers and their slots, pause and limits (sql/fleet_queues.sql)."""
        rows = await self.q.sql.fetch(self.q.pool, "fleet_queues", float(live_seconds))
        return [
            QueueRow(
                type=r["type"],
                plan=r["plan"],
                paused=r["paused"],
                concurrency=r["concurrency"],
                global_concurrency=r["global_concurrency"],
                channel_concurrency=r["channel_concurrency"],
                rate_limit=r["rate_limit"],
                rate_period_seconds=r["rate_period_seconds"],
                runnable=int(r["runnable"]),
                scheduled=int(r["scheduled"]),
                waiting=int(r["waiting"]),
                oldest_runnable_seconds=r["oldest_runnable_seconds"],
                running=int(r["running"]),
                workers=int(r["workers"]),
                slots=int(r["slots"]),
            )
            for r in rows
        ]

    async def throughput(self, seconds: float = 3600.0) -> list[Throughput]:
        """Jobs that finished in the last `seconds`, per minute, type and final state."""
        rows = await self.q.sql.fetch(self.q.pool, "fleet_throughput", float(seconds))
        return [Throughput(r["minute"], r["type"], r["state"], int(r["jobs"])) for r in rows]

    async def workers_seen(self, seconds: float = 600.0, limit: int = 200) -> list[WorkerRow]:
        """Worker processes seen in the last `seconds`, live ones first."""
        rows = await self.q.sql.fetch(self.q.pool, "fleet_workers", float(seconds), limit)
        return [
            WorkerRow(
                r["id"],
                r["hostname"],
                r["pid"],
                tuple(r["types"]),
                r["concurrency"],
                r["started_at"],
                r["last_seen_at"],
                r["stopped_at"],
            )
            for r in rows
        ]

    async def stuck(self, limit: int = 50) -> list[StuckJob]:
        """Running jobs whose lease expired, oldest first (the stuck_jobs view)."""
        rows = await self.q.sql.fetch(self.q.pool, "fleet_stuck_jobs", limit)
        return [StuckJob(**dict(r)) for r in rows]

    async def failures(self, limit: int = 50) -> list[FailedAttempt]:
        """The latest failed attempts, newest first (the recent_failures view's columns)."""
        rows = await self.q.sql.fetch(self.q.pool, "fleet_recent_failures", limit)
        return [FailedAttempt(**dict(r)) for r in rows]
