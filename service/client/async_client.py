"""AsyncClient: the asyncio pgcue client (httpx.AsyncClient, asyncio.sleep) over the one core."""

from __future__ import annotations

import asyncio
import builtins
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar, cast, overload

import httpx

from pgcue.client.core import (
    DEFAULT_URL,
    Close,
    Config,
    Core,
    Each,
    Effect,
    Emit,
    JobRef,
    OnConflict,
    Op,
    Open,
    Read,
    Send,
    Sleep,
)
from pgcue.client.events import Event, StreamState
from pgcue.client.files import ByteRange, Destination, open_destination
from pgcue.client.retry import RetryPolicy
from pgcue.core.wire import JobOut, NewJobBody, StagesOut, Stats

T = TypeVar("T")
_Opened = dict[int, tuple[httpx.Response, AsyncIterator[bytes]]]


class _Runner:
    """Carries out a core operation's effects with httpx.AsyncClient."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def _do(self, effect: Effect, opened: _Opened) -> Any:
        if isinstance(effect, Send):
            return await self.http.send(effect.request)
        if isinstance(effect, Open):
            response = await self.http.send(effect.request, stream=True)
            opened[id(response)] = (response, response.aiter_bytes())
            return response
        if isinstance(effect, Read):
            _, chunks = opened[id(effect.response)]
            async for chunk in chunks:
                if chunk:
                    return chunk
            return None
        if isinstance(effect, Close):
            entry = opened.pop(id(effect.response), None)
            if entry is not None:
                await entry[0].aclose()
            return None
        if isinstance(effect, Sleep):
            await asyncio.sleep(max(0.0, effect.seconds))
            return None
        if isinstance(effect, Each):
            limit = asyncio.Semaphore(effect.limit)

            async def one(op: Op[Any]) -> tuple[Any, BaseException | None]:
                async with limit:
                    try:
                        return await self.run(op), None
                    except Exception as exc:
                        return None, exc

            return list(await asyncio.gather(*(one(op) for op in effect.ops)))
        raise TypeError(f"an operation yielded {effect!r} where it may not")

    @staticmethod
    async def _close(opened: _Opened) -> None:
        for response, _ in opened.values():
            await response.aclose()

    async def run(self, op: Op[T]) -> T:
        """Run an operation to its result."""
        opened: _Opened = {}
        value: Any = None
        failure: Exception | None = None
        try:
            while True:
                try:
                    effect = op.send(value) if failure is None else op.throw(failure)
                except StopIteration as stop:
                    return cast(T, stop.value)
                value, failure = None, None
                try:
                    value = await self._do(effect, opened)
                except Exception as exc:
                    failure = exc
        finally:
            op.close()
            await self._close(opened)

    async def iterate(self, op: Op[None]) -> AsyncIterator[Any]:
        """Run an operation, yielding what it emits."""
        opened: _Opened = {}
        value: Any = None
        failure: Exception | None = None
        try:
            while True:
                try:
                    effect = op.send(value) if failure is None else op.throw(failure)
                except StopIteration:
                    return
                value, failure = None, None
                if isinstance(effect, Emit):
                    yield effect.item
                    continue
                try:
                    value = await self._do(effect, opened)
                except Exception as exc:
                    failure = exc
        finally:
            op.close()
            await self._close(opened)


class AsyncEventStream:
    """The events of a job or of channels: `async for` over it; `last_event_id` is where
    to resume. Use it as an async context manager (or `await aclose()`) to let go of its
    connection before its end: an async iterator left behind is closed only when
    collected."""

    def __init__(self, events: AsyncIterator[Event], state: StreamState) -> None:
        self._events = events
        self._state = state

    @property
    def last_event_id(self) -> str | None:
        return self._state.last_event_id

    @property
    def last_data(self) -> Any:
        return self._state.last_data

    @property
    def reconnects(self) -> int:
        return self._state.reconnects

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> Event:
        return await anext(self._events)

    async def aclose(self) -> None:
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            await aclose()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncClient:
    """The asyncio pgcue client: the same calls as Client, awaited (see Client).

    async with AsyncClient("http://127.0.0.1:8000", api_key) as pgcue:
        job = await pgcue.wait(await pgcue.enqueue("tts", "demo", {"text": "Hello"}), timeout=600)
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        stream_timeout: float = 45.0,
        retry: RetryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
        concurrency: int = 8,
    ) -> None:
        config = Config(
            base_url=base_url or os.environ.get("PGCUE_URL") or DEFAULT_URL,
            api_key=api_key if api_key is not None else os.environ.get("PGCUE_API_KEY"),
            timeout=timeout,
            stream_timeout=stream_timeout,
            retry=retry or RetryPolicy(),
        )
        self._core = Core(config)
        self._own = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._run = _Runner(self._http)
        self._concurrency = concurrency

    async def aclose(self) -> None:
        if self._own:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- jobs -----------------------------------------------------------------------------

    async def enqueue(
        self,
        type: str,
        channel_id: str,
        payload: Mapping[str, Any] | None = None,
        *,
        priority: int = 0,
        run_at: datetime | None = None,
        max_attempts: int | None = None,
        unique_key: str | None = None,
        on_conflict: OnConflict = "return",
        idempotency_key: str | None = None,
    ) -> JobOut:
        """Enqueue a job; with no `idempotency_key` one is made, so the retries of this
        call make one job. The same key given again returns the first job."""
        return await self._run.run(
            self._core.enqueue(
                type,
                channel_id,
                payload,
                priority=priority,
                run_at=run_at,
                max_attempts=max_attempts,
                unique_key=unique_key,
                on_conflict=on_conflict,
                idempotency_key=idempotency_key,
            )
        )

    async def enqueue_many(self, jobs: Iterable[NewJobBody], *, key_prefix: str | None = None) -> builtins.list[JobOut]:
        """Enqueue each job (`concurrency` requests at once: the API commits concurrent
        enqueues together); job i's Idempotency-Key is `<key_prefix>-<i>`. Raises
        EnqueueManyFailed, holding the jobs made, if any was refused."""
        return await self._run.run(self._core.enqueue_many(jobs, key_prefix=key_prefix, concurrency=self._concurrency))

    async def get(self, job: JobRef) -> JobOut:
        return await self._run.run(self._core.get(job))

    def list(
        self,
        *,
        channel_id: str | None = None,
        type: str | None = None,
        state: str | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[JobOut]:
        """Every matching job, newest first, fetched a keyset page at a time as you iterate."""
        return self._run.iterate(
            self._core.list_jobs(channel_id=channel_id, type=type, state=state, page_size=page_size)
        )

    async def recent(self, channel_id: str | None = None) -> builtins.list[JobOut]:
        return await self._run.run(self._core.recent(channel_id))

    async def cancel(self, job: JobRef) -> JobOut:
        return await self._run.run(self._core.cancel(job))

    async def retry(self, job: JobRef) -> JobOut:
        return await self._run.run(self._core.retry(job))

    async def delete(self, job: JobRef) -> None:
        await self._run.run(self._core.delete(job))

    async def clear(self, channel_id: str) -> int:
        return await self._run.run(self._core.clear(channel_id))

    async def approve(self, job: JobRef) -> StagesOut:
        return await self._run.run(self._core.resume(job, "approve", None))

    async def reject(self, job: JobRef, feedback: str) -> StagesOut:
        return await self._run.run(self._core.resume(job, "reject", feedback))

    async def stages(self, job: JobRef) -> StagesOut:
        return await self._run.run(self._core.stages(job))

    async def stats(self) -> Stats:
        return await self._run.run(self._core.stats())

    @overload
    async def artifact(
        self, job: JobRef, to: None = None, *, name: str | None = None, byte_range: ByteRange | None = None
    ) -> bytes: ...

    @overload
    async def artifact(
        self, job: JobRef, to: Destination, *, name: str | None = None, byte_range: ByteRange | None = None
    ) -> int: ...

    async def artifact(
        self,
        job: JobRef,
        to: Destination | None = None,
        *,
        name: str | None = None,
        byte_range: ByteRange | None = None,
    ) -> bytes | int:
        """As Client.artifact. The file is written from the event loop's thread (local
        writes of 64 KiB chunks; pass an open file of your own to do otherwise)."""
        with open_destination(to) as (sink, finish):
            written = await self._run.run(self._core.artifact(job, sink, name=name, byte_range=byte_range))
            return finish(written)

    # --- waiting and streams --------------------------------------------------------------

    async def wait(
        self, job: JobRef, timeout: float = 600.0, *, stop_at_approval: bool = True, poll_interval: float = 2.0
    ) -> JobOut:
        """As Client.wait."""
        return await self._run.run(
            self._core.wait(job, timeout, stop_at_approval=stop_at_approval, poll_interval=poll_interval)
        )

    @overload
    def events(
        self, job: JobRef, *, last_event_id: str | None = None, reconnect_for: float | None = 300.0
    ) -> AsyncEventStream: ...

    @overload
    def events(
        self, *, channel_id: str | None = None, last_event_id: str | None = None, reconnect_for: float | None = 300.0
    ) -> AsyncEventStream: ...

    def events(
        self,
        job: JobRef | None = None,
        *,
        channel_id: str | None = None,
        last_event_id: str | None = None,
        reconnect_for: float | None = 300.0,
    ) -> AsyncEventStream:
        """As Client.events: `async with client.events(job) as stream: async for event in stream`."""
        if job is not None and channel_id is not None:
            raise TypeError("events() takes a job or a channel_id, not both")
        state = StreamState(last_event_id=last_event_id)
        op = self._core.events(state, job=job, channel_id=channel_id, reconnect_for=reconnect_for)
        return AsyncEventStream(self._run.iterate(op), state)
