"""Live job events: one LISTEN connection per process, one poller, fanned out in memory.

The `pgcue_events` notification carries nothing; it only says "the event log grew". On a
wake-up one query reads every event this process has not delivered yet, for every
subscriber at once, and hands each subscriber the events it may see. Nothing polls while
nobody listens. The poller waits a window that grows with the number of subscribers
(EventHub.window: ~0 for a few, 5 ms for 1,000) so a burst is read, and fanned out, once;
notifications that arrive while a poll runs are answered by one more poll.

Fan-out is shared: subscribers that see the same events of a poll get the same Batch, and
a caught-up subscriber's cursor equals its neighbours', so each event is framed once per
distinct cursor, not once per subscriber (service/api/streams.py). Subscribers are woken
a slice at a time (EventHub._wake_loop), so a large fan-out never holds the event loop.

Exactness across reconnects rests on the cursor (see poll_job_events.sql): a Cursor
(last id L, snapshot S, extra ids X) means "delivered = the stream's events visible in S
with id <= L, plus the ids X". An event id can commit after higher ids, and a snapshot
tells exactly which transactions it saw, so a resume from any cursor returns precisely
what was missed: no gap, no duplicate. The SSE `id:` of each event is its cursor.

Shutdown: `shutdown()` (called when the server is told to stop, before it waits for open
connections) closes every subscriber; each stream then sends a final `event: shutdown`
whose `id:` is the stream's cursor and ends, so a client reconnects (to this or another
process) with that Last-Event-ID and misses nothing. See service/api/streams.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import structlog
from pgcue.core import db, metrics
from pgcue.core.config import Settings
from pgcue.core.statements import Sql, channel, sql_for

log = structlog.get_logger("pgcue.events")

FINISHED = frozenset({"completed", "failed", "cancelled"})
MAX_LIST = 1000  # xip or extra ids in one cursor
WAKE_SLICE = 64  # subscribers woken per event-loop turn during a fan-out (see EventHub._wake_loop)
# What one fan-out costs per subscriber (a wake-up and a socket write), roughly: 1,000
# subscribers took 30-45 ms on two busy cores. EventHub.window() scales with it.
FANOUT_COST_PER_SUBSCRIBER = 50e-6
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
        return self.kind == "job:status" and isinstance(self.data, dict) and self.data.get("state") in FINISHED


def _rows(rows: Sequence[Any]) -> tuple[list[Event], Snapshot]:
    """Events and snapshot from a poll/replay answer (one NULL row when nothing is new)."""
    snap = Snapshot.parse(rows[0]["snapshot"])
    events = [
        Event(r["id"], int(r["tx"]), r["job_id"], r["channel_id"], r["kind"], r["data"], r["created_at"])
        for r in rows
        if r["id"] is not None
    ]
    return events, snap


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


@dataclass(eq=False, slots=True)
class Batch:
    """Events read in one snapshot and handed to subscribers together.

    The hub makes one Batch per poll for every group of subscribers that see the same
    events (same job, same channels), so work that depends only on the batch and a
    subscriber's cursor is done once for the whole group: caught-up subscribers share
    their cursor, and `rendered` (kept by service/api/streams.py) holds the frames made
    for each distinct starting cursor.
    """

    events: list[Event]
    snap: Snapshot
    rendered: dict[Any, Any] = field(default_factory=dict)


@dataclass(eq=False)
class Subscriber:
    """One SSE stream: what it may see, and a bounded backlog of matching events."""

    job_id: uuid.UUID | None = None
    channels: frozenset[str] | None = None  # None: every channel (admin)
    limit: int = 1000
    backlog: deque[Batch] = field(default_factory=deque)
    pending: int = 0
    overflowed: bool = False
    closed: bool = False
    ready: bool = False  # something happened (events, overflow, close, keep-alive due) since take()
    queued: bool = False  # in the hub's run queue: will be woken for its new batches
    _waiter: asyncio.Future[None] | None = None

    def wants(self, e: Event) -> bool:
        if self.job_id is not None and e.job_id != self.job_id:
            return False
        return self.channels is None or e.channel_id in self.channels

    def wake(self) -> None:
        """Tell the stream to look at its state (new batches, overflow, close, keep-alive)."""
        self.ready = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def waiter(self) -> asyncio.Future[None]:
        """A future the next wake() completes; the stream awaits it when it has nothing to
        send (after checking `ready`). A bare future rather than an asyncio.Event: a fan-out
        wakes every subscriber, and each object that lives across the wait is one more for
        the garbage collector to promote and later traverse."""
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        return waiter

    def take(self) -> list[Batch]:
        batches = list(self.backlog)
        self.backlog.clear()
        self.pending = 0
        self.ready = False
        return batches


class EventHub:
    """The process's event source: a LISTEN connection, a poller, and the subscribers."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        *,
        debounce: float = 0.005,
        application_name: str = "pgcue-api-listen",
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.sql: Sql = sql_for(settings.schema)
        self.debounce = debounce
        self.application_name = application_name
        self.cursor: Cursor | None = None
        self.listening = asyncio.Event()
        self._subs: set[Subscriber] = set()
        self._runnable: deque[Subscriber] = deque()  # have new batches, not woken yet
        self._kick = asyncio.Event()  # the run queue became non-empty
        self._by_job: dict[uuid.UUID, set[Subscriber]] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.draining = False

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen_loop(), name="pgcue-events-listen"),
            asyncio.create_task(self._poll_loop(), name="pgcue-events-poll"),
            asyncio.create_task(self._wake_loop(), name="pgcue-events-wake"),
        ]

    def shutdown(self) -> None:
        """End every stream (each sends its final event) and refuse new ones."""
        self.draining = True
        for sub in list(self._subs):
            sub.closed = True
            sub.wake()

    async def close(self) -> None:
        self.shutdown()
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- subscribers -------------------------------------------------------------------

    async def subscribe(self, sub: Subscriber) -> None:
        """Start collecting events for `sub`. Call before reading its replay, so nothing
        committed between the replay and the first live batch is lost."""
        if self.draining:
            sub.closed = True
            return
        async with self._lock:
            if not self._subs or self.cursor is None:
                self.cursor = await self.now()  # idle until now (no polls ran): start from the present
            self._subs.add(sub)
            if sub.job_id is not None:
                self._by_job.setdefault(sub.job_id, set()).add(sub)

    async def now(self) -> Cursor:
        """A cursor at the present: every event committed so far counts as delivered."""
        row = await self.sql.fetchrow(self.pool, "current_event_cursor")
        assert row is not None
        return Cursor(int(row["last_id"]), Snapshot.parse(row["snapshot"]))

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)  # a queued subscriber stays in _runnable: waking it then is harmless
        if sub.job_id is not None:
            group = self._by_job.get(sub.job_id)
            if group is not None:
                group.discard(sub)
                if not group:
                    del self._by_job[sub.job_id]

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    async def replay(self, sub: Subscriber, cursor: Cursor) -> tuple[list[Event], Snapshot]:
        """The events of `sub`'s stream not delivered under `cursor`, and their snapshot."""
        rows = await self.sql.fetch(
            self.pool,
            "replay_job_events",
            sub.job_id,
            None if sub.channels is None else sorted(sub.channels),
            cursor.last_id,
            cursor.snapshot.text(),
            list(cursor.extra),
        )
        return _rows(rows)

    def _publish(self, events: list[Event], snap: Snapshot) -> None:
        if not events:
            return
        by_job: dict[uuid.UUID, list[Event]] = {}
        for e in events:
            by_job.setdefault(e.job_id, []).append(e)
        # One Batch per distinct filter: subscribers that see the same events share it.
        shared: dict[tuple[uuid.UUID | None, frozenset[str] | None], Batch | None] = {}
        for sub in list(self._subs):
            key = (sub.job_id, sub.channels)
            if key in shared:
                batch = shared[key]
            else:
                if sub.job_id is not None:
                    mine = [e for e in by_job.get(sub.job_id, ()) if sub.wants(e)]
                else:
                    mine = [e for e in events if sub.wants(e)]
                batch = shared[key] = Batch(mine, snap) if mine else None
            if batch is None:
                continue
            if sub.pending + len(batch.events) > sub.limit:
                # A slow reader holds no more memory: drop it; it resumes with Last-Event-ID.
                sub.overflowed = True
                sub.backlog.clear()
                sub.pending = 0
                self.unsubscribe(sub)
                sub.wake()
            else:
                sub.backlog.append(batch)
                sub.pending += len(batch.events)
                if not sub.queued:
                    sub.queued = True
                    self._runnable.append(sub)
        self._kick.set()

    async def _wake_loop(self) -> None:
        """Wake the subscribers that have new batches, WAKE_SLICE per event-loop turn.

        Each woken stream writes to its socket within the same turn, so waking a thousand
        at once would hold the event loop for the whole fan-out (tens of ms): no NOTIFY
        read, no poll, no other request in between. In slices, the poller runs during a
        fan-out, and a subscriber still waiting in the queue takes the newer batch with the
        one it was queued for, in the same single write. A subscriber that gets a batch
        after it was woken goes to the back of the queue.
        """
        while True:
            await self._kick.wait()
            self._kick.clear()
            while self._runnable:
                for _ in range(min(WAKE_SLICE, len(self._runnable))):
                    sub = self._runnable.popleft()
                    sub.queued = False
                    sub.wake()
                await asyncio.sleep(0)  # let the woken streams write, and I/O in, before more

    # --- the poller --------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def window(self) -> float:
        """How long the poller waits after a notification before it reads.

        A wait adds to every event's latency, but a burst (a job's queued, running and
        completed come within a few ms) read in one poll is one fan-out instead of three,
        and a fan-out costs each subscriber a wake-up and a socket write. So the window is
        about a tenth of what a fan-out costs: nothing to speak of for a few subscribers
        (5 µs for one), `debounce` at most (reached at 1,000). Notifications that arrive
        while a poll runs set the wake flag again and are read by the next poll.
        """
        return min(self.debounce, 0.1 * FANOUT_COST_PER_SUBSCRIBER * len(self._subs))

    async def poll(self) -> None:
        """Read every event not yet delivered by this process and fan it out."""
        async with self._lock:
            if not self._subs or self.cursor is None:
                return
            cur = self.cursor
            rows = await self.sql.fetch(self.pool, "poll_job_events", cur.last_id, cur.snapshot.text())
            events, snap = _rows(rows)
            last = max([cur.last_id, *(e.id for e in events)])
            self.cursor = Cursor(last, snap)
            self._publish(events, snap)

    async def _poll_loop(self) -> None:
        fallback = self.settings.poll_interval
        while not self._closed:
            try:
                await asyncio.wait_for(self._wake.wait(), fallback)
            except TimeoutError:
                pass  # a lost notification only delays delivery by the fallback interval
            if not self._subs:
                self._wake.clear()
                continue
            window = self.window()
            if window > 0:
                await asyncio.sleep(window)  # coalesce a burst of notifications into one query
            self._wake.clear()
            try:
                await self.poll()
            except Exception as exc:  # the poller must outlive any error: every stream depends on it
                log.warning("event poll failed", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(min(1.0, fallback))

    # --- the LISTEN connection -----------------------------------------------------------

    async def _listen_loop(self) -> None:
        backoff = 0.05
        name = channel(self.settings.schema, "events")
        while not self._closed:
            conn: asyncpg.Connection | None = None
            lost = asyncio.Event()
            try:
                conn = await db.connect(self.settings, application_name=self.application_name)
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(name, lambda *_: self._wake.set())
                self.listening.set()
                metrics.listener_connected("api", True)
                backoff = 0.05
                self._wake.set()  # whatever committed while we were not listening
                while not lost.is_set() and not conn.is_closed():
                    try:
                        await asyncio.wait_for(lost.wait(), 5.0)
                    except TimeoutError:
                        await self.sql.fetch(conn, "ping")  # notice a half-open connection
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event listener lost; reconnecting", error=str(exc), retry_in=backoff)
            finally:
                self.listening.clear()
                metrics.listener_connected("api", False)
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2.0)
            if self._closed:
                return
            self._wake.set()
            await asyncio.sleep(backoff)
            backoff = min(2.0, backoff * 2)
