"""Event cursors: how a live stream knows exactly what it has delivered.

Exactness across reconnects rests on the cursor (see sql/poll_job_events.sql): a Cursor
(last id L, snapshot S, extra ids X) means "delivered = the stream's events visible in S
with id <= L, plus the ids X". An event id can commit after higher ids, and a snapshot
tells exactly which transactions it saw, so a resume from any cursor returns precisely
what was missed: no gap, no duplicate. The SSE `id:` of each event is its cursor.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pgcue.core.states import FINISHED_STATES, EventKind

MAX_LIST = 1000  # xip or extra ids in one cursor
_U64 = 2**64


class BadCursor(ValueError):
    """A Last-Event-ID this server did not make (or cannot use)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A pg_snapshot: which transactions' writes a reader saw."""

    xmin: int
    xmax: int
    xip: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))

    def text(self) -> str:
        return f"{self.xmin}:{self.xmax}:{','.join(str(x) for x in sorted(self.xip))}"

    def visible(self, xid: int) -> bool:
        """pg_visible_in_snapshot for a committed transaction."""
        return xid < self.xmin or (xid < self.xmax and xid not in self.xip)


# Sees nothing: a cursor with it replays a stream from its first event.
EMPTY_SNAPSHOT = Snapshot(1, 1)

_CURSOR = re.compile(r"^(\d{1,19}):(\d{1,19}):(\d{1,19}):((?:\d{1,19})(?:,\d{1,19})*)?:((?:\d{1,19})(?:,\d{1,19})*)?$")


@dataclass(frozen=True, slots=True)
class Cursor:
    last_id: int
    snapshot: Snapshot
    extra: tuple[int, ...] = ()

    def delivered(self, event: Event) -> bool:
        return (self.snapshot.visible(event.tx) and event.id <= self.last_id) or event.id in self.extra

    def encode(self) -> str:
        s = self.snapshot
        xip = ",".join(str(x) for x in sorted(s.xip))
        return f"{self.last_id}:{s.xmin}:{s.xmax}:{xip}:{','.join(str(i) for i in self.extra)}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Parse a Last-Event-ID; BadCursor says what is wrong with it."""
        match = _CURSOR.match(text.strip())
        if not match:
            raise BadCursor(
                "Last-Event-ID is not an event id of this stream (expected the `id:` of an event, "
                "like 42:1000:1002:1000:)"
            )
        last_id, xmin, xmax = (int(match.group(i)) for i in (1, 2, 3))
        xip = [int(x) for x in (match.group(4) or "").split(",") if x]
        extra = tuple(int(x) for x in (match.group(5) or "").split(",") if x)
        if not (1 <= xmin <= xmax < _U64 // 2 and last_id < 2**63):
            raise BadCursor("Last-Event-ID holds an impossible snapshot (xmin must be 1..xmax)")
        if len(xip) > MAX_LIST or len(extra) > MAX_LIST:
            raise BadCursor(f"Last-Event-ID lists more than {MAX_LIST} transactions or ids")
        if any(not xmin <= x < xmax for x in xip) or any(i > last_id for i in extra):
            raise BadCursor("Last-Event-ID holds an impossible snapshot (running transactions out of range)")
        return cls(last_id, Snapshot(xmin, xmax, frozenset(xip)), extra)


START = Cursor(0, EMPTY_SNAPSHOT)


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    tx: int
    job_id: uuid.UUID
    channel_id: str
    kind: str
    data: Any
    created_at: datetime

    @property
    def terminal(self) -> bool:
        return (
            self.kind == EventKind.JOB_STATUS
            and isinstance(self.data, dict)
            and self.data.get("state") in FINISHED_STATES
        )


def advance(cursor: Cursor, events: Sequence[Event], snap: Snapshot) -> list[tuple[Event, Cursor]]:
    """Order the undelivered events of a batch read in `snap` and give each its cursor.

    Events that committed late (id <= the cursor's last id) go first, each recorded as an
    extra id; then the rest by id, whose cursor is simply (their id, `snap`): everything
    visible in `snap` up to that id has then been delivered.
    """
    fresh = [e for e in events if not cursor.delivered(e)]
    out: list[tuple[Event, Cursor]] = []
    extra = list(cursor.extra)
    for e in fresh:
        if e.id <= cursor.last_id:
            extra.append(e.id)
            out.append((e, Cursor(cursor.last_id, cursor.snapshot, tuple(extra))))
    for e in fresh:
        if e.id > cursor.last_id:
            out.append((e, Cursor(e.id, snap)))
    return out
