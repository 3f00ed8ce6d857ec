"""Server-sent events: one job's events, or every event of the caller's channels.

Each event's `id:` is its cursor (pgcue.core.events), so a client that reconnects with
Last-Event-ID gets exactly what it missed, then live events. What it missed is replayed a
page at a time (PGCUE_SSE_REPLAY_PAGE events), each written before the next is read, so a
resume from far back holds one page in memory, not the channel's history. A client too
slow to keep up is cut off (its backlog is bounded, and one write may wait at most
PGCUE_SSE_WRITE_TIMEOUT seconds) and resumes the same way. A key may hold
PGCUE_SSE_STREAMS_PER_KEY streams at once (429 past it); a revoked key's streams end
within seconds (pgcue.api.hub).

The first frame, `retry: 1000` and `id: <cursor>`, carries no event: its `id:` is the
cursor the stream starts from, so a client cut off before any event (a channel stream
starts "now") resumes with it as Last-Event-ID and misses nothing.

When the server shuts down (SIGTERM), every open stream ends with one final frame,
`id: <cursor>\nevent: shutdown\ndata: {"reason": "server shutting down"}`, then closes.
Its `id:` is the cursor after the last event the stream sent (or the one it started
from), so an EventSource, which reconnects on its own with the last id it saw, resumes
exactly where it stopped, even on a stream that had sent no event yet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from anyio import create_task_group
from litestar import Controller, Request, get
from litestar.params import Parameter
from litestar.response import Stream
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import Receive, Send

from pgcue.api import metrics
from pgcue.api.access import caller_of, channel_scope, job_id_of, visible_job
from pgcue.api.hub import Batch, EventHub, Subscriber, TooManyStreams
from pgcue.api.jobs import JobIdPath
from pgcue.api.problems import bad_request, responses, too_many
from pgcue.core.events import START, BadCursor, Cursor, Event, advance
from pgcue.core.states import EventKind
from pgcue.core.wire import Shutdown, iso_ms

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
# The same cursor in the query, for a client that cannot set headers on its first request
# (a browser's EventSource: the panel starts its stream from the cursor its page was read
# at). The header wins: an EventSource reconnecting sends the newer id there.
LastEventIdQuery = Annotated[
    str | None,
    Parameter(
        query="lastEventId",
        max_length=40_000,
        description="as Last-Event-ID, for clients that cannot send headers; the header wins",
    ),
]
STREAM_DESCRIPTION = (
    f"text/event-stream. Events: {', '.join(k.value for k in EventKind)}; data is JSON "
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
        raise bad_request("bad-last-event-id", "Bad Last-Event-ID", str(exc), field="Last-Event-ID") from None


def _resume(header: str | None, query: str | None, default: Cursor) -> Cursor:
    """Where a stream resumes: the Last-Event-ID header, else the lastEventId query."""
    if header:
        return _cursor(header, default)
    if not query:
        return default
    try:
        return Cursor.decode(query)
    except BadCursor as exc:
        raise bad_request("bad-last-event-id", "Bad lastEventId", str(exc), field="lastEventId") from None


def _shutdown_frame(cursor: Cursor) -> bytes:
    body = _encode(Shutdown(reason="server shutting down", retry_ms=1000))
    return b"id: %s\nevent: shutdown\ndata: %s\n\n" % (cursor.encode().encode(), body)


def _frame(event: Event, cursor: Cursor) -> bytes:
    body: dict[str, Any] = dict(event.data) if isinstance(event.data, dict) else {"value": event.data}
    body.update(
        eventId=event.id,
        jobId=str(event.job_id),
        channelId=event.channel_id,
        createdAt=iso_ms(event.created_at),
    )
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (cursor.encode().encode(), event.kind.encode(), _encode(body))


@dataclass(frozen=True, slots=True)
class _Rendered:
    """What a stream sends for one batch, from one starting cursor."""

    chunk: bytes  # every frame, joined: written with the stream's other pending frames at once
    cursor: Cursor  # the stream's cursor after them
    ended: bool  # a job stream's terminal event is the last frame: the stream ends there
    counts: tuple[tuple[str, int], ...]  # (kind, events of that kind): what metrics.SSE_SENT_TALLY adds


def _render(batch: Batch, cursor: Cursor, until_terminal: bool) -> _Rendered:
    """The frames of `batch` not delivered under `cursor`, made once per distinct cursor.

    A Batch is shared by every subscriber with the same filter (pgcue.api.hub), and
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
        counts = tuple(kinds.items())
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
            tally = metrics.SSE_SENT_TALLY
            for kind, n in done.counts:
                tally[kind] = tally.get(kind, 0) + n
        if done.ended:
            return b"".join(chunks), cursor, True
    return b"".join(chunks), cursor, False


async def _stream(
    hub: EventHub, sub: Subscriber, cursor: Cursor, keepalive: float, until_terminal: bool
) -> AsyncIterator[bytes]:
    """The stream's bytes: the replay a page at a time, then one chunk per wake-up holding
    every frame pending for it, so a subscriber costs one ASGI send (one socket write) per
    wake-up, however many events arrived meanwhile. Nothing but the chunk (bytes, which
    the garbage collector ignores) outlives a wake-up: a thousand streams keep few objects
    alive between fan-outs."""
    metrics.SSE_SUBSCRIBERS.inc()
    quiet = _Quiet(sub, keepalive)
    try:
        # The cursor the stream starts from, before any event: a client cut off before the
        # first event resumes from it instead of from "now" (a channel stream starts now).
        yield b"retry: 1000\nid: %s\n\n" % cursor.encode().encode()
        await hub.subscribe(sub)
        # The replay goes first, before any live batch published since subscribe();
        # advance() drops from those whatever the replay already delivered.
        while not (sub.overflowed or sub.closed or sub.revoked):
            events, snap = await hub.replay(sub, cursor)
            chunk, cursor, ended = _collect([Batch(events, snap)], cursor, until_terminal)
            if chunk:
                yield chunk
                quiet.wrote()
            if ended:
                return
            if len(events) < hub.settings.sse_replay_page:
                break
        while True:
            chunk, cursor, ended = _collect(sub.take(), cursor, until_terminal)
            if ended:
                yield chunk
                return
            if sub.revoked:
                yield chunk + b": this key may no longer read this stream\n\n"
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
        hub.close_stream(sub.key_id)
        metrics.SSE_SUBSCRIBERS.dec()


class _Body:
    """A stream's chunks, with how long one write of them may wait for the client."""

    def __init__(self, chunks: AsyncIterator[bytes], write_timeout: float) -> None:
        self.chunks = chunks
        self.write_timeout = write_timeout

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.chunks


class _WriteWatch:
    """Ends a stream whose one write has waited `timeout` seconds for the client, as an
    `asyncio.timeout` around each write would, for the price of one timer per `timeout`
    per stream instead of one armed and cancelled on every write: at 10,000 subscribers
    those per-write timers were a fifth of the API's CPU in a fan-out (py-spy,
    docs/benchmarks.md). The stream marks when a write starts (`since`) and ends; the
    timer, when it finds a write older than `timeout`, cancels the stream's task."""

    __slots__ = ("fired", "handle", "loop", "since", "task", "timeout")

    def __init__(self, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.timeout = timeout
        self.since: float | None = None
        self.fired = False
        self.handle = self.loop.call_later(timeout, self._check)

    def _check(self) -> None:
        since, now = self.since, self.loop.time()
        if since is not None and now - since >= self.timeout:
            self.fired = True
            self.task.cancel()
            return
        # Next look: when the write in flight (if any) would be `timeout` old. The loop may
        # run a timer up to its clock resolution early: never look again sooner than 1 ms.
        due = (now if since is None else since) + self.timeout
        self.handle = self.loop.call_at(max(due, now + 0.001), self._check)

    def cancel(self) -> None:
        self.handle.cancel()


class _TimedStreamingResponse(ASGIStreamingResponse):
    """A streaming response whose every write may wait at most `write_timeout` seconds
    for the client: past it the stream ends (the client stopped reading; it resumes with
    Last-Event-ID), instead of holding its buffers and its slot for ever."""

    __slots__ = ()  # the same layout as Litestar's: SseStream swaps the class of its response

    async def _stream(self, send: Send) -> None:
        body = self.iterator
        assert isinstance(body, _Body)
        watch = _WriteWatch(body.write_timeout)
        loop = watch.loop
        try:
            async for chunk in body.chunks:
                watch.since = loop.time()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                watch.since = None
            watch.since = loop.time()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not watch.fired:
                raise
            watch.task.uncancel()  # our own cancellation, as asyncio.timeout's: the stream just ends
            metrics.SSE_STALLED.inc()
        finally:
            watch.cancel()
            aclose = getattr(body.chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def send_body(self, send: Send, receive: Receive) -> None:
        # As Litestar's, and when the stream ends without completing the response (a
        # stalled client), stop waiting for the client to disconnect.
        async with create_task_group() as group:

            async def stream() -> None:
                try:
                    await self._stream(send)
                finally:
                    group.cancel_scope.cancel()

            group.start_soon(stream)
            await self._listen_for_disconnect(cancel_scope=group.cancel_scope, receive=receive)


class SseStream(Stream):
    """text/event-stream with a write timeout (see _TimedStreamingResponse)."""

    def __init__(self, chunks: AsyncIterator[bytes], *, write_timeout: float) -> None:
        super().__init__(_Body(chunks, write_timeout), media_type="text/event-stream", headers=SSE_HEADERS)

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        response = super().to_asgi_response(*args, **kwargs)
        response.__class__ = _TimedStreamingResponse
        return response


def _open(hub: EventHub, key_id: int) -> None:
    try:
        hub.open_stream(key_id)
    except TooManyStreams:
        metrics.SSE_REFUSED.inc()
        raise too_many(
            f"this key has {hub.settings.sse_streams_per_key} streams open (PGCUE_SSE_STREAMS_PER_KEY); "
            "close one, or use one channel stream (GET /api/events) for many jobs"
        ) from None


class EventsController(Controller):
    path = "/api"
    tags = ("events",)
    security = ({"bearer": []},)

    @get(
        "/jobs/{job_id:str}/events",
        summary="One job's live events (SSE); ends after its terminal status",
        description=STREAM_DESCRIPTION + " Without Last-Event-ID the job's whole history is sent first.",
        media_type="text/event-stream",
        responses=responses(400, 404, 429),
    )
    async def job_events(
        self,
        request: Request[Any, Any, Any],
        job_id: JobIdPath,
        last_event_id: LastEventId = None,
        last_event_id_query: LastEventIdQuery = None,
    ) -> Stream:
        state = request.app.state
        caller = caller_of(request)
        job = await visible_job(state.queue, caller, job_id_of(job_id))
        cursor = _resume(last_event_id, last_event_id_query, START)
        hub: EventHub = state.hub
        _open(hub, caller.key_id)
        sub = Subscriber(
            job_id=job.id, channels=frozenset({job.channel_id}), limit=state.settings.sse_backlog, key_id=caller.key_id
        )
        return SseStream(
            _stream(hub, sub, cursor, state.settings.sse_keepalive, until_terminal=True),
            write_timeout=state.settings.sse_write_timeout,
        )

    @get(
        "/events",
        summary="Every event of the caller's channels (SSE)",
        description=STREAM_DESCRIPTION + " Without Last-Event-ID the stream starts now. An admin key without "
        "channelId sees every channel.",
        media_type="text/event-stream",
        responses=responses(400, 404, 429),
    )
    async def channel_events(
        self,
        request: Request[Any, Any, Any],
        channel_id: Annotated[str | None, Parameter(query="channelId", min_length=1, max_length=200)] = None,
        last_event_id: LastEventId = None,
        last_event_id_query: LastEventIdQuery = None,
    ) -> Stream:
        state = request.app.state
        caller = caller_of(request)
        scope = channel_scope(caller, channel_id)
        hub: EventHub = state.hub
        if last_event_id or last_event_id_query:
            cursor = _resume(last_event_id, last_event_id_query, START)
        else:
            cursor = await hub.now()
        _open(hub, caller.key_id)
        sub = Subscriber(
            channels=None if scope is None else frozenset(scope), limit=state.settings.sse_backlog, key_id=caller.key_id
        )
        return SseStream(
            _stream(hub, sub, cursor, state.settings.sse_keepalive, until_terminal=False),
            write_timeout=state.settings.sse_write_timeout,
        )
