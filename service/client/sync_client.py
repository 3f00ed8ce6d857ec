"""Client: the synchronous pgcue client (httpx.Client, time.sleep) over the one core."""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Iterable, Iterator, Mapping
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


class _Runner:
    """Carries out a core operation's effects with httpx.Client."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def _do(self, effect: Effect, opened: dict[int, tuple[httpx.Response, Iterator[bytes]]]) -> Any:
        if isinstance(effect, Send):
            return self.http.send(effect.request)
        if isinstance(effect, Open):
            response = self.http.send(effect.request, stream=True)
            opened[id(response)] = (response, response.iter_bytes())
            return response
        if isinstance(effect, Read):
            _, chunks = opened[id(effect.response)]
            for chunk in chunks:
                if chunk:
                    return chunk
            return None
        if isinstance(effect, Close):
            entry = opened.pop(id(effect.response), None)
            if entry is not None:
                entry[0].close()
            return None
        if isinstance(effect, Sleep):
            if effect.seconds > 0:
                time.sleep(effect.seconds)
            return None
        if isinstance(effect, Each):
            results: list[tuple[Any, BaseException | None]] = []
            for op in effect.ops:  # one after another: a synchronous client has no other way
                try:
                    results.append((self.run(op), None))
                except Exception as exc:
                    results.append((None, exc))
            return results
        raise TypeError(f"an operation yielded {effect!r} where it may not")

    def run(self, op: Op[T]) -> T:
        """Run an operation to its result."""
        opened: dict[int, tuple[httpx.Response, Iterator[bytes]]] = {}
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
                    value = self._do(effect, opened)
                except Exception as exc:
                    failure = exc
        finally:
            op.close()
            for response, _ in opened.values():
                response.close()

    def iterate(self, op: Op[None]) -> Iterator[Any]:
        """Run an operation, yielding what it emits."""
        opened: dict[int, tuple[httpx.Response, Iterator[bytes]]] = {}
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
                    value = self._do(effect, opened)
                except Exception as exc:
                    failure = exc
        finally:
            op.close()
            for response, _ in opened.values():
                response.close()


class EventStream:
    """The events of a job or of channels: iterate it; `last_event_id` is where to resume
    (pass it as `last_event_id=` to a later events() call). Close it, or use it as a
    context manager, to let go of its connection before its end."""

    def __init__(self, events: Iterator[Event], state: StreamState) -> None:
        self._events = events
        self._state = state

    @property
    def last_event_id(self) -> str | None:
        """The cursor after the last event yielded (or the stream's start)."""
        return self._state.last_event_id

    @property
    def last_data(self) -> Any:
        """The last event's data as plain JSON (with fields a handler added to ctx.stage())."""
        return self._state.last_data

    @property
    def reconnects(self) -> int:
        return self._state.reconnects

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def close(self) -> None:
        close = getattr(self._events, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """A synchronous pgcue client.

        with Client("http://127.0.0.1:8000", api_key) as pgcue:
            job = pgcue.wait(pgcue.enqueue("tts", "demo", {"text": "Hello"}), timeout=600)

    `base_url` and `api_key` default to $PGCUE_URL (else http://127.0.0.1:8000) and
    $PGCUE_API_KEY. Every call has a timeout (`timeout` seconds for each of connecting,
    writing and reading; streams allow `stream_timeout` seconds of silence, past the
    server's keep-alives). Idempotent calls are retried under `retry`
    (pgcue.client.retry). Pass `http` to use your own httpx.Client (proxies, TLS); it is
    then yours to close. Safe to share between threads.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        stream_timeout: float = 45.0,
        retry: RetryPolicy | None = None,
        http: httpx.Client | None = None,
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
        self._http = http or httpx.Client(timeout=timeout)
        self._run = _Runner(self._http)

    def close(self) -> None:
        if self._own:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # --- jobs -----------------------------------------------------------------------------

    def enqueue(
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
        return self._run.run(
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

    def enqueue_many(self, jobs: Iterable[NewJobBody], *, key_prefix: str | None = None) -> builtins.list[JobOut]:
        """Enqueue each job (one request each, in order); job i's Idempotency-Key is
        `<key_prefix>-<i>`. Raises EnqueueManyFailed, holding the jobs made, if any was refused."""
        return self._run.run(self._core.enqueue_many(jobs, key_prefix=key_prefix))

    def get(self, job: JobRef) -> JobOut:
        return self._run.run(self._core.get(job))

    def list(
        self,
        *,
        channel_id: str | None = None,
        type: str | None = None,
        state: str | None = None,
        page_size: int = 50,
    ) -> Iterator[JobOut]:
        """Every matching job, newest first, fetched a keyset page at a time as you iterate."""
        return self._run.iterate(
            self._core.list_jobs(channel_id=channel_id, type=type, state=state, page_size=page_size)
        )

    def recent(self, channel_id: str | None = None) -> builtins.list[JobOut]:
        """The six most recently completed jobs, with their results."""
        return self._run.run(self._core.recent(channel_id))

    def cancel(self, job: JobRef) -> JobOut:
        """Cancel: a queued job at once, a running one at its next checkpoint (Conflict when finished)."""
        return self._run.run(self._core.cancel(job))

    def retry(self, job: JobRef) -> JobOut:
        """Put a failed or cancelled job back in the queue with fresh attempts."""
        return self._run.run(self._core.retry(job))

    def delete(self, job: JobRef) -> None:
        """Delete a finished job, its events and its artifacts."""
        self._run.run(self._core.delete(job))

    def clear(self, channel_id: str) -> int:
        """Delete every finished job of the channel; returns how many."""
        return self._run.run(self._core.clear(channel_id))

    def approve(self, job: JobRef) -> StagesOut:
        """Approve the stage a paused pipeline run waits on; the run goes on."""
        return self._run.run(self._core.resume(job, "approve", None))

    def reject(self, job: JobRef, feedback: str) -> StagesOut:
        """Reject the stage a paused pipeline run waits on: it runs again with `feedback`."""
        return self._run.run(self._core.resume(job, "reject", feedback))

    def stages(self, job: JobRef) -> StagesOut:
        """A pipeline run's stages (empty for another job)."""
        return self._run.run(self._core.stages(job))

    def stats(self) -> Stats:
        return self._run.run(self._core.stats())

    @overload
    def artifact(
        self, job: JobRef, to: None = None, *, name: str | None = None, byte_range: ByteRange | None = None
    ) -> bytes: ...

    @overload
    def artifact(
        self, job: JobRef, to: Destination, *, name: str | None = None, byte_range: ByteRange | None = None
    ) -> int: ...

    def artifact(
        self,
        job: JobRef,
        to: Destination | None = None,
        *,
        name: str | None = None,
        byte_range: ByteRange | None = None,
    ) -> bytes | int:
        """The job's artifact (or its file `name`): as bytes, or written to `to` (a path,
        written whole under a temporary name first, or an open binary file), returning
        the bytes written. `byte_range=(first, last)` asks for those bytes only
        (inclusive; last None for the rest)."""
        with open_destination(to) as (sink, finish):
            written = self._run.run(self._core.artifact(job, sink, name=name, byte_range=byte_range))
            return finish(written)

    # --- waiting and streams --------------------------------------------------------------

    def wait(
        self, job: JobRef, timeout: float = 600.0, *, stop_at_approval: bool = True, poll_interval: float = 2.0
    ) -> JobOut:
        """Wait for the job to end: the job when it completed; JobFailed, JobCancelled,
        AwaitingApproval (a pipeline run paused for a person, raised as soon as it pauses;
        pass stop_at_approval=False to wait through it) or WaitTimeout otherwise."""
        return self._run.run(
            self._core.wait(job, timeout, stop_at_approval=stop_at_approval, poll_interval=poll_interval)
        )

    @overload
    def events(
        self, job: JobRef, *, last_event_id: str | None = None, reconnect_for: float | None = 300.0
    ) -> EventStream: ...

    @overload
    def events(
        self, *, channel_id: str | None = None, last_event_id: str | None = None, reconnect_for: float | None = 300.0
    ) -> EventStream: ...

    def events(
        self,
        job: JobRef | None = None,
        *,
        channel_id: str | None = None,
        last_event_id: str | None = None,
        reconnect_for: float | None = 300.0,
    ) -> EventStream:
        """Live events, typed (JobStatus, JobOutput, JobProgress, StageUpdated, OtherEvent).

        With a job: its events from the first (or after `last_event_id`), ending after it
        finishes. Without: every event of your channels (or of `channel_id`) from now (or
        after `last_event_id`), without end. Reconnects on its own with Last-Event-ID, so
        no event is yielded twice or missed; raises when it cannot reconnect for
        `reconnect_for` seconds (None: never gives up)."""
        if job is not None and channel_id is not None:
            raise TypeError("events() takes a job or a channel_id, not both")
        state = StreamState(last_event_id=last_event_id)
        op = self._core.events(state, job=job, channel_id=channel_id, reconnect_for=reconnect_for)
        return EventStream(self._run.iterate(op), state)
