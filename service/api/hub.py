"""Live job events for the API process: one LISTEN connection, one poller, fanned out in
memory to every SSE stream.

The `pgcue_events` notification carries nothing; it only says "the event log grew". On a
wake-up one query reads every event this process has not delivered yet, for every
subscriber at once, and hands each subscriber the events it may see. Nothing polls while
nobody listens. The poller waits a window that grows with the number of subscribers
(EventHub.window: ~0 for a few, 5 ms for 1,000) so a burst is read, and fanned out, once;
notifications that arrive while a poll runs are answered by one more poll.

Fan-out is shared: subscribers that see the same events of a poll get the same Batch, and
a caught-up subscriber's cursor equals its neighbours', so each event is framed once per
distinct cursor, not once per subscriber (pgcue.api.streams). Subscribers are woken a
slice at a time (EventHub._wake_loop), so a large fan-out never holds the event loop.

Bounds: a subscriber holds at most `sse_backlog` pending events (past that it is cut off
and resumes with Last-Event-ID); a key holds at most `sse_streams_per_key` open streams;
the keys of open streams are checked again every KEY_CHECK_SECONDS, so a revoked key's
streams (or a stream whose channel changed hands) end within seconds.

Shutdown: `shutdown()` (called when the server is told to stop, before it waits for open
connections) closes every subscriber; each stream then sends a final `event: shutdown`
whose `id:` is the stream's cursor and ends, so a client reconnects (to this or another
process) with that Last-Event-ID and misses nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from pgcue.core import db
from pgcue.core.components import Supervisor
from pgcue.core.config import Settings
from pgcue.core.events import Cursor, Event, Snapshot
from pgcue.core.listener import Listener
from pgcue.core.queue import Queue

log = structlog.get_logger("pgcue.events")

WAKE_SLICE = 64  # subscribers woken per event-loop turn during a fan-out (see EventHub._wake_loop)
# What one fan-out costs per subscriber (a wake-up and a socket write), roughly: 1,000
# subscribers took 30-45 ms on two busy cores. EventHub.window() scales with it.
FANOUT_COST_PER_SUBSCRIBER = 50e-6
KEY_CHECK_SECONDS = 2.0


class TooManyStreams(Exception):
    """The key has as many streams open as PGCUE_SSE_STREAMS_PER_KEY allows."""


@dataclass(eq=False, slots=True)
class Batch:
    """Events read in one snapshot and handed to subscribers together.

    The hub makes one Batch per poll for every group of subscribers that see the same
    events (same job, same channels), so work that depends only on the batch and a
    subscriber's cursor is done once for the whole group: caught-up subscribers share
    their cursor, and `rendered` (kept by pgcue.api.streams) holds the frames made for
    each distinct starting cursor.
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
    key_id: int = 0  # the API key that opened it (re-checked while it is open)
    backlog: deque[Batch] = field(default_factory=deque)
    pending: int = 0
    overflowed: bool = False
    closed: bool = False
    revoked: bool = False  # its key was revoked, or it may no longer see its channels
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


class _Loop:
    """A hub loop as a supervised component."""

    def __init__(self, name: str, run: Callable[[], Any]) -> None:
        self.name = name
        self._run = run

    async def run(self) -> None:
        await self._run()


class EventHub:
    """The process's event source: a LISTEN connection, a poller, and the subscribers."""

    def __init__(
        self,
        settings: Settings,
        queue: Queue,
        *,
        debounce: float = 0.005,
        application_name: str = "pgcue-api-listen",
        on_fatal: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.debounce = debounce
        self.cursor: Cursor | None = None
        self.listener = Listener(
            settings,
            queue.fleet.notify,
            {settings.channel("events"): lambda _c, _p: self._wake.set()},
            component="api",
            application_name=application_name,
            on_connect=self.wake,  # whatever committed while we were not listening
        )
        self._subs: set[Subscriber] = set()
        self._runnable: deque[Subscriber] = deque()  # have new batches, not woken yet
        self._kick = asyncio.Event()  # the run queue became non-empty
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._streams_per_key: dict[int, int] = {}
        self._supervisor = Supervisor(on_fatal or _log_fatal, logger=log)
        self._closed = False
        self.draining = False

    @property
    def listening(self) -> asyncio.Event:
        return self.listener.connected

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._supervisor.start(self.listener)
        self._supervisor.start(_Loop("events-poll", self._poll_loop))
        self._supervisor.start(_Loop("events-wake", self._wake_loop))
        self._supervisor.start(_Loop("events-keys", self._key_loop))

    def shutdown(self) -> None:
        """End every stream (each sends its final event) and refuse new ones."""
        self.draining = True
        for sub in list(self._subs):
            sub.closed = True
            sub.wake()

    async def close(self) -> None:
        self.shutdown()
        self._closed = True
        await self._supervisor.stop()

    # --- streams per key ---------------------------------------------------------------

    def open_stream(self, key_id: int) -> None:
        """Count a stream the key opens; TooManyStreams past the limit."""
        n = self._streams_per_key.get(key_id, 0)
        if n >= self.settings.sse_streams_per_key:
            raise TooManyStreams(key_id)
        self._streams_per_key[key_id] = n + 1

    def close_stream(self, key_id: int) -> None:
        n = self._streams_per_key.get(key_id, 0) - 1
        if n <= 0:
            self._streams_per_key.pop(key_id, None)
        else:
            self._streams_per_key[key_id] = n

    # --- subscribers -------------------------------------------------------------------

    async def subscribe(self, sub: Subscriber) -> None:
        """Start collecting events for `sub`. Call before reading its replay, so nothing
        committed between the replay and the first live batch is lost."""
        if self.draining:
            sub.closed = True
            return
        async with self._lock:
            if not self._subs or self.cursor is None:
                self.cursor = await self.queue.events.now()  # idle until now: start from the present
            self._subs.add(sub)

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)  # a queued subscriber stays in _runnable: waking it then is harmless

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    async def now(self) -> Cursor:
        return await self.queue.events.now()

    async def replay(self, sub: Subscriber, cursor: Cursor) -> tuple[list[Event], Snapshot]:
        """The next page of `sub`'s stream not delivered under `cursor` (at most
        PGCUE_SSE_REPLAY_PAGE events; fewer means the replay has caught up)."""
        return await self.queue.events.replay(sub.job_id, sub.channels, cursor, self.settings.sse_replay_page)

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

    # --- revoked keys ----------------------------------------------------------------------

    async def _key_loop(self) -> None:
        """End the streams of revoked keys, and those whose caller may no longer see the
        channels (or the job) they stream."""
        while True:
            await asyncio.sleep(KEY_CHECK_SECONDS)
            subs = [s for s in self._subs if s.key_id]
            if not subs:
                continue
            try:
                callers = await self.queue.keys.callers(sorted({s.key_id for s in subs}))
            except Exception as exc:
                if not db.unavailable(exc):
                    raise
                continue  # checked again next time; a stream is never cut for an outage
            for sub in subs:
                caller = callers.get(sub.key_id)
                still = caller is not None and (
                    caller.admin or (sub.channels is not None and sub.channels <= caller.channels)
                )
                if not still:
                    sub.revoked = True
                    self.unsubscribe(sub)
                    sub.wake()

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
            events, snap = await self.queue.events.poll(cur)
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
            except Exception as exc:
                if not db.unavailable(exc):
                    raise  # a bug: the supervisor logs it and restarts the loop
                log.warning("event poll failed; the database is unavailable", error=db.describe(exc))
                await asyncio.sleep(min(1.0, fallback))


def _log_fatal(name: str, exc: BaseException) -> None:
    log.critical("event hub component stopped for good", component=name, error=str(exc))
