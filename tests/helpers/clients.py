"""One test body for both clients: `Pg` awaits every call, running the synchronous
Client's in a worker thread (the `api` fixture serves in the test's own event loop, which
a blocking call made from it would stall), so a test parametrized with `kind` runs the
same steps against Client and AsyncClient."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from pgcue.client import AsyncClient, AsyncEventStream, Client, Event, EventStream

_END = object()


class ThreadStream:
    """An EventStream (or any iterator) read from a worker thread, as an async iterator."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    @property
    def last_event_id(self) -> str | None:
        return self.stream.last_event_id

    @property
    def last_data(self) -> Any:
        return self.stream.last_data

    @property
    def reconnects(self) -> int:
        return self.stream.reconnects

    def __aiter__(self) -> ThreadStream:
        return self

    async def __anext__(self) -> Any:
        item = await asyncio.to_thread(next, self.stream, _END)
        if item is _END:
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        close = getattr(self.stream, "close", None)
        if close is not None:
            await asyncio.to_thread(close)

    async def __aenter__(self) -> ThreadStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


Stream = ThreadStream | AsyncEventStream


class Pg:
    def __init__(self, kind: str, url: str, key: str | None, **options: Any) -> None:
        self.kind = kind
        self.sync: Client | None = Client(url, key, **options) if kind == "sync" else None
        self.aio: AsyncClient | None = AsyncClient(url, key, **options) if kind == "async" else None

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if self.aio is not None:
            return getattr(self.aio, name)
        fn = getattr(self.sync, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(fn, *args, **kwargs)

        return call

    def events(self, *args: Any, **kwargs: Any) -> Stream:
        if self.aio is not None:
            return self.aio.events(*args, **kwargs)
        assert self.sync is not None
        stream: EventStream = self.sync.events(*args, **kwargs)
        return ThreadStream(stream)

    def list(self, **kwargs: Any) -> AsyncIterator[Any]:
        if self.aio is not None:
            return self.aio.list(**kwargs)
        assert self.sync is not None
        return ThreadStream(self.sync.list(**kwargs))

    async def close(self) -> None:
        if self.aio is not None:
            await self.aio.aclose()
        if self.sync is not None:
            self.sync.close()


async def collect(stream: Stream, until: Callable[[Event], bool] | None = None, timeout: float = 30.0) -> list[Event]:
    """Events of `stream` until its end, or up to and including the first `until` accepts; bounded."""
    out: list[Event] = []
    async with asyncio.timeout(timeout):
        async for event in stream:
            out.append(event)
            if until is not None and until(event):
                break
    return out
