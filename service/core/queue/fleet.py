"""The fleet: worker processes, the policies their claims obey, pauses, and what operators
and dashboards read (stats, the metrics snapshot)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pgcue.core.errors import UnknownJobType
from pgcue.core.models import DepthRow, Stats, TypePolicy
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
