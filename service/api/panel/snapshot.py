"""The panel's counts: one cached snapshot per channel (its status chips) and one for the
fleet (the operator view), shared by every open session of this API process.

However many people watch, a channel's counts are read at most once per TTL, and the
reads themselves are bounded (capped counts on an index: Queue.count_jobs; the operator
view's statements follow the backlog or the last hour, never the history). A stale
snapshot is served at once while one fresh read runs behind it (stale-while-revalidate),
so a page never waits for a count except the very first time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import structlog

from pgcue.core.models import Channel, FailedAttempt, QueueRow, StuckJob, Throughput, WorkerRow
from pgcue.core.queue import Queue
from pgcue.core.states import JobState

log = structlog.get_logger("pgcue.panel")

T = TypeVar("T")
COUNT_CAP = 10_000  # a status chip says "10,000+" past this
CHANNEL_TTL = 3.0
FLEET_TTL = 5.0
LIVE_WORKER_SECONDS = 60.0
CHART_SECONDS = 3600.0
MAX_ENTRIES = 1000


@dataclass(frozen=True)
class ChannelCounts:
    channel_id: str
    jobs: dict[str, int]  # per state, each at most COUNT_CAP (a channel's own jobs, not stage jobs)
    awaiting_approval: int
    taken_at: datetime

    def capped(self, state: str) -> bool:
        return self.jobs.get(state, 0) >= COUNT_CAP


@dataclass(frozen=True)
class FleetSnapshot:
    queues: list[QueueRow]
    throughput: list[Throughput]
    workers: list[WorkerRow]
    stuck: list[StuckJob]
    failures: list[FailedAttempt]
    channels: list[Channel]
    taken_at: datetime

    def finished(self, job_type: str) -> dict[str, int]:
        """What finished of a type in the chart's window, per final state."""
        out: dict[str, int] = {}
        for t in self.throughput:
            if t.type == job_type:
                out[t.state] = out.get(t.state, 0) + t.jobs
        return out


@dataclass
class _Entry(Generic[T]):
    value: T | None = None
    at: float = float("-inf")
    task: asyncio.Task[T] | None = None
    used: float = field(default_factory=time.monotonic)


def _retrieved(task: asyncio.Task[Any]) -> None:
    """Mark a refresh's failure as seen: a stale value was served, and the next read tries
    again (a first read that failed raised to its caller)."""
    if not task.cancelled():
        task.exception()


class SharedCache(Generic[T]):
    """Values by key, each read at most once per `ttl` however many ask; a stale value is
    answered at once while one task refreshes it."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[Any, _Entry[T]] = {}

    async def get(self, key: Any, load: Callable[[], Awaitable[T]]) -> T:
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= MAX_ENTRIES:
                oldest = min(self._entries, key=lambda k: self._entries[k].used)
                self._entries.pop(oldest)
            entry = self._entries[key] = _Entry()
        entry.used = time.monotonic()
        fresh = time.monotonic() - entry.at < self.ttl
        if entry.value is not None and fresh:
            return entry.value
        if entry.task is None:
            entry.task = asyncio.create_task(self._load(entry, load))
            entry.task.add_done_callback(_retrieved)
        if entry.value is not None:
            return entry.value  # stale: answered now, refreshed behind
        return await asyncio.shield(entry.task)

    async def _load(self, entry: _Entry[T], load: Callable[[], Awaitable[T]]) -> T:
        try:
            value = await load()
            entry.value = value
            entry.at = time.monotonic()
            return value
        except Exception as exc:
            if entry.value is not None:
                log.warning("panel snapshot refresh failed; serving the last one", error=str(exc))
            raise
        finally:
            entry.task = None

    def forget(self, key: Any) -> None:
        """The next read of `key` waits for fresh values (after an action changed them)."""
        entry = self._entries.pop(key, None)
        if entry is not None and entry.task is not None:
            entry.task.cancel()


class Snapshots:
    """The panel's shared snapshots (app.state.panel.snapshots)."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.channels: SharedCache[ChannelCounts] = SharedCache(CHANNEL_TTL)
        self.fleet_cache: SharedCache[FleetSnapshot] = SharedCache(FLEET_TTL)

    async def channel(self, channel_id: str) -> ChannelCounts:
        async def load() -> ChannelCounts:
            jobs = await self.queue.count_jobs(channel_id, [s.value for s in JobState], cap=COUNT_CAP)
            waiting = await self.queue.stages.awaiting_approval([channel_id])
            return ChannelCounts(channel_id, jobs, waiting, datetime.now(UTC))

        return await self.channels.get(channel_id, load)

    async def fleet(self) -> FleetSnapshot:
        async def load() -> FleetSnapshot:
            q = self.queue
            return FleetSnapshot(
                queues=await q.fleet.queues(LIVE_WORKER_SECONDS),
                throughput=await q.fleet.throughput(CHART_SECONDS),
                workers=await q.fleet.workers_seen(),
                stuck=await q.fleet.stuck(),
                failures=await q.fleet.failures(20),
                channels=await q.fleet.channels(),
                taken_at=datetime.now(UTC),
            )

        return await self.fleet_cache.get("fleet", load)
