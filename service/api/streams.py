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
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.params import Parameter
from litestar.response import Stream

from service import metrics
from service.api.jobs import authenticate, caller_of, channel_scope, visible_job
from service.api.problems import bad_request, responses
from service.events import START, BadCursor, Cursor, Event, EventHub, Snapshot, Subscriber, advance

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
    metrics.SSE_EVENTS_SENT.labels(kind=event.kind).inc()
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (cursor.encode().encode(), event.kind.encode(), _encode(body))


async def _stream(
    hub: EventHub, sub: Subscriber, cursor: Cursor, keepalive: float, until_terminal: bool
) -> AsyncIterator[bytes]:
    metrics.SSE_SUBSCRIBERS.inc()
    try:
        yield b"retry: 1000\n\n"
        await hub.subscribe(sub)
        events, snap = await hub.replay(sub, cursor)
        batches: list[tuple[list[Event], Snapshot]] = [(events, snap)]
        while True:
            for events, snap in batches:
                for event, after in advance(cursor, events, snap):
                    cursor = after
                    yield _frame(event, after)
                    if until_terminal and event.terminal:
                        return
            if sub.overflowed:
                yield b": too slow; reconnect with Last-Event-ID to resume\n\n"
                return
            if sub.closed:
                yield _shutdown_frame(cursor)
                return
            try:
                await asyncio.wait_for(sub.ready.wait(), keepalive)
            except TimeoutError:
                yield b": keep-alive\n\n"
            batches = sub.take()
    finally:
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
