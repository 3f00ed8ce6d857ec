"""Server-sent events: one job's events, or every event of the caller's channels.

Each event's `id:` is its cursor (service/events.py), so a client that reconnects with
Last-Event-ID gets exactly what it missed, then live events. A client too slow to keep up
is cut off (its backlog is bounded) and resumes the same way.

When the server shuts down (SIGTERM), every open stream ends with one final frame,
`id: <cursor>\nevent: shutdown\ndata: {"reason": "server shutting down"}`, then closes.
Its `id:` is the cursor after the last event the stream sent (or the one it started
from), so an EventSource, which reconnects on its own with the last id it saw, resumes
exactly where it stopped, even on a stream that had sent no event yet.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.params import Parameter
from litestar.response import Stream
from pgcue.api.jobs import authenticate, caller_of, channel_scope, visible_job
from pgcue.api.problems import bad_request, responses
from pgcue.core import metrics
from pgcue.core.events import START, BadCursor, Batch, Cursor, Event, EventHub, Subscriber, advance

_encode = msgspec.json.Encoder().encode
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
LastEventId = Annotated[
    str | None,
    Parameter(
        header="Last-Event-ID",
        max_length=40_000,
        description="the `id:` of the last event received; the stream resumes right after it",
    ),
]
STREAM_DESCRIPTION = (
    "text/event-stream. Events: job:status, job:output, job:progress, stage:updated; data is JSON "
    "{eventId, jobId, channelId, createdAt, ...the event's fields}. Every event has an id: to resume with "
    "Last-Event-ID; comment lines keep the connection alive. When the server shuts down the stream ends with "
    "`event: shutdown` whose id: resumes it (reconnect with it as Last-Event-ID)."
)


def _cursor(text: str | None, default: Cursor) -> Cursor:
    if not text:
        return default
    try:
        return Cursor.decode(text)
    except BadCursor as exc:
        raise bad_request("bad-last-event-id", "Bad Last-Event-ID", str(exc)) from None


def _shutdown_frame(cursor: Cursor) -> bytes:
    body = _encode({"reason": "server shutting down", "retryMs": 1000})
    return b"id: %s\nevent: shutdown\ndata: %s\n\n" % (cursor.encode().encode(), body)


def _frame(event: Event, cursor: Cursor) -> bytes:
    body: dict[str, Any] = dict(event.data) if isinstance(event.data, dict) else {"value": event.data}
    body.update(
        eventId=event.id,
        jobId=str(event.job_id),
        channelId=event.channel_id,
        createdAt=event.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (cursor.encode().encode(), event.kind.encode(), _encode(body))


# The labelled children of SSE_EVENTS_SENT, looked up once per kind: .labels() takes a lock
# and builds its key on every call.
_sent_children: dict[str, Any] = {}


def _sent(kind: str) -> Any:
    child = _sent_children.get(kind)
    if child is None:
        child = _sent_children[kind] = metrics.SSE_EVENTS_SENT.labels(kind=kind)
    return child


@dataclass(frozen=True, slots=True)
class _Rendered:
    """What a stream sends for one batch, from one starting cursor."""

    chunk: bytes  # every frame, joined: written with the stream's other pending frames at once
    cursor: Cursor  # the stream's cursor after them
    ended: bool  # a job stream's terminal event is the last frame: the stream ends there
    counts: tuple[tuple[Any, int], ...]  # (SSE_EVENTS_SENT child, events of that kind)


def _render(batch: Batch, cursor: Cursor, until_terminal: bool) -> _Rendered:
    """The frames of `batch` not delivered under `cursor`, made once per distinct cursor.

    A Batch is shared by every subscriber with the same filter (service/events.py), and
    subscribers that are caught up hold equal cursors, so a thousand subscribers usually
    cost one advance() and one JSON encoding per event. Cursors stay exact: the result is
    a pure function of (cursor, batch), which is exactly the memo's key.
    """
    key = (cursor, until_terminal)
    done: _Rendered | None = batch.rendered.get(key)
    if done is None:
        frames: list[bytes] = []
        kinds: dict[str, int] = {}
        ended = False
        after = cursor
        for event, after in advance(cursor, batch.events, batch.snap):
            frames.append(_frame(event, after))
            kinds[event.kind] = kinds.get(event.kind, 0) + 1
            if until_terminal and event.terminal:
                ended = True
                break
        counts = tuple((_sent(kind), n) for kind, n in kinds.items())
        done = batch.rendered[key] = _Rendered(b"".join(frames), after, ended, counts)
    return done


class _Quiet:
    """Wakes a stream that has written nothing for `interval` seconds, so it sends a
    keep-alive comment. One timer per interval per stream: waiting with a timeout
    (asyncio.wait_for) instead cost a task and a timer on every wake-up of every stream."""

    def __init__(self, sub: Subscriber, interval: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.sub = sub
        self.interval = interval
        self.last = self.loop.time()
        self.due = False
        self.handle = self.loop.call_at(self.last + interval, self._check)

    def wrote(self) -> None:
        self.last = self.loop.time()
        self.due = False

    def _check(self) -> None:
        now = self.loop.time()
        if now >= self.last + self.interval:
            self.due = True
            self.sub.wake()
            self.handle = self.loop.call_at(now + self.interval, self._check)
        else:
            self.handle = self.loop.call_at(self.last + self.interval, self._check)

    def cancel(self) -> None:
        self.handle.cancel()


def _collect(batches: list[Batch], cursor: Cursor, until_terminal: bool) -> tuple[bytes, Cursor, bool]:
    """Every frame of `batches` not yet sent, as one chunk; the cursor after them; and
    whether a job stream's terminal event ended them."""
    chunks: list[bytes] = []
    for batch in batches:
        done = _render(batch, cursor, until_terminal)
        cursor = done.cursor
        if done.chunk:
            chunks.append(done.chunk)
            for child, n in done.counts:
                child.inc(n)
        if done.ended:
            return b"".join(chunks), cursor, True
    return b"".join(chunks), cursor, False


async def _stream(
    hub: EventHub, sub: Subscriber, cursor: Cursor, keepalive: float, until_terminal: bool
) -> AsyncIterator[bytes]:
    """The stream's bytes: one chunk per wake-up holding every frame pending for it, so a
    subscriber costs one ASGI send (one socket write) per wake-up, however many events
    arrived meanwhile. Nothing but the chunk (bytes, which the garbage collector ignores)
    outlives a wake-up: a thousand streams keep few objects alive between fan-outs."""
    metrics.SSE_SUBSCRIBERS.inc()
    quiet = _Quiet(sub, keepalive)
    try:
        yield b"retry: 1000\n\n"
        await hub.subscribe(sub)
        events, snap = await hub.replay(sub, cursor)
        # The replay goes first, before any live batch published since subscribe();
        # advance() drops from those whatever the replay already delivered.
        sub.backlog.appendleft(Batch(events, snap))
        while True:
            chunk, cursor, ended = _collect(sub.take(), cursor, until_terminal)
            if ended:
                yield chunk
                return
            if sub.overflowed:
                yield chunk + b": too slow; reconnect with Last-Event-ID to resume\n\n"
                return
            if sub.closed:
                yield chunk + _shutdown_frame(cursor)
                return
            if chunk:
                yield chunk
                quiet.wrote()
            elif quiet.due:
                yield b": keep-alive\n\n"
                quiet.wrote()
            if not sub.ready:
                await sub.waiter()
    finally:
        quiet.cancel()
        hub.unsubscribe(sub)
        metrics.SSE_SUBSCRIBERS.dec()


class EventsController(Controller):
    path = "/api"
    tags = ("events",)
    guards = (authenticate,)
    security = ({"bearer": []},)

    @get(
        "/jobs/{job_id:uuid}/events",
        summary="One job's live events (SSE); ends after its terminal status",
        description=STREAM_DESCRIPTION + " Without Last-Event-ID the job's whole history is sent first.",
        media_type="text/event-stream",
        responses=responses(400, 404),
    )
    async def job_events(
        self, request: Request[Any, Any, Any], job_id: uuid.UUID, last_event_id: LastEventId = None
    ) -> Stream:
        state = request.app.state
        await visible_job(state.queue, caller_of(request), job_id)
        cursor = _cursor(last_event_id, START)
        sub = Subscriber(job_id=job_id, limit=state.options.sse_backlog)
        return Stream(
            _stream(state.hub, sub, cursor, state.options.keepalive, until_terminal=True),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )

    @get(
        "/events",
        summary="Every event of the caller's channels (SSE)",
        description=STREAM_DESCRIPTION + " Without Last-Event-ID the stream starts now. An admin key without "
        "channelId sees every channel.",
        media_type="text/event-stream",
        responses=responses(400, 404),
    )
    async def channel_events(
        self,
        request: Request[Any, Any, Any],
        channel_id: Annotated[str | None, Parameter(query="channelId", min_length=1, max_length=200)] = None,
        last_event_id: LastEventId = None,
    ) -> Stream:
        state = request.app.state
        scope = channel_scope(caller_of(request), channel_id)
        hub: EventHub = state.hub
        if last_event_id:
            cursor = _cursor(last_event_id, START)
        else:
            cursor = await hub.now()
        sub = Subscriber(channels=None if scope is None else frozenset(scope), limit=state.options.sse_backlog)
        return Stream(
            _stream(hub, sub, cursor, state.options.keepalive, until_terminal=False),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
