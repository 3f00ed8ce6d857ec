"""The event log as live streams read it: the present, a poll for what is new, and a paged
replay of what a client missed (see pgcue.core.events for the cursor's meaning)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from pgcue.core.events import Cursor, Event, Snapshot
from pgcue.core.models import JobEvent

if TYPE_CHECKING:
    from pgcue.core.queue import Queue


def _events(rows: Sequence[Any]) -> tuple[list[Event], Snapshot]:
    """Events and snapshot from a poll/replay answer (one NULL row when nothing is new)."""
    snap = Snapshot.parse(rows[0]["snapshot"])
    events = [
        Event(r["id"], int(r["tx"]), r["job_id"], r["channel_id"], r["kind"], r["data"], r["created_at"])
        for r in rows
        if r["id"] is not None
    ]
    return events, snap


class EventLog:
    def __init__(self, queue: Queue) -> None:
        self.q = queue

    async def now(self) -> Cursor:
        """A cursor at the present: every event committed so far counts as delivered."""
        row = await self.q.sql.fetchrow(self.q.pool, "current_event_cursor")
        assert row is not None
        return Cursor(int(row["last_id"]), Snapshot.parse(row["snapshot"]))

    async def poll(self, cursor: Cursor) -> tuple[list[Event], Snapshot]:
        """Every event not delivered under `cursor` (its extra ids aside), any stream's."""
        rows = await self.q.sql.fetch(self.q.pool, "poll_job_events", cursor.last_id, cursor.snapshot.text())
        return _events(rows)

    async def replay(
        self, job_id: uuid.UUID | None, channels: Collection[str] | None, cursor: Cursor, limit: int
    ) -> tuple[list[Event], Snapshot]:
        """At most `limit` events of one stream (a job, or channels; None: every channel)
        not delivered under `cursor`, lowest ids first, and the snapshot they were read in.
        Fewer than `limit` means the replay has caught up."""
        rows = await self.q.sql.fetch(
            self.q.pool,
            "replay_job_events",
            job_id,
            None if channels is None else sorted(channels),
            cursor.last_id,
            cursor.snapshot.text(),
            list(cursor.extra),
            limit,
        )
        return _events(rows)

    async def history(self, job_id: uuid.UUID, *, output: bool, limit: int) -> list[JobEvent]:
        """A job's latest `limit` events, oldest first: its output chunks (`output`), or
        every other kind (status, progress, stage changes)."""
        rows = await self.q.sql.fetch(self.q.pool, "list_job_events", job_id, output, limit)
        return [JobEvent(r["id"], r["kind"], r["data"], r["created_at"]) for r in rows]
