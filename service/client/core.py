"""The client's one core: every call written once, as a generator of effects.

An operation (enqueue, wait, events, ...) does no I/O itself: it yields what it needs
done (Send a request, Open a stream, Read its next bytes, Sleep, Emit an item to the
caller, run Each of several operations) and is sent the result back, or has the failure
thrown in. `Client` runs the effects with httpx.Client and time.sleep, `AsyncClient`
with httpx.AsyncClient and asyncio.sleep, so the two behave the same by construction:
retries, reconnects, resumption and wait()'s deadline are here, once.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Literal, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from pgcue.client import errors
from pgcue.client.events import StreamState, decode, is_terminal
from pgcue.client.retry import RETRY_STATUSES, RetryPolicy, never_sent, retryable
from pgcue.client.sse import Decoder
from pgcue.core.states import FINISHED_STATES, JobState, WaitingFor
from pgcue.core.wire import (
    Cleared,
    JobEnvelope,
    JobList,
    JobOut,
    JobPage,
    JobStatus,
    NewJobBody,
    ResumeBody,
    Shutdown,
    StagesOut,
    Stats,
)

T = TypeVar("T")

OnConflict = Literal["return", "replace", "reject"]
JobRef = str | JobOut  # a job's id, or the job


# --- effects ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send the request and read the whole answer. Result: the httpx.Response."""

    request: httpx.Request


@dataclass(frozen=True, slots=True)
class Open:
    """Send the request; return once the answer's head is in. Result: the httpx.Response,
    its body unread (Read it, then Close it; the runner closes what is left open)."""

    request: httpx.Request


@dataclass(frozen=True, slots=True)
class Read:
    """The next bytes of an open answer. Result: bytes, or None at its end."""

    response: httpx.Response


@dataclass(frozen=True, slots=True)
class Close:
    response: httpx.Response


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Emit:
    """Hand one item to the caller of an iterating operation (list, events)."""

    item: Any


@dataclass(frozen=True, slots=True)
class Each:
    """Run these operations, up to `limit` at once where the runner can. Result: one
    (value, None) or (None, exception) per operation, in order."""

    ops: tuple[Op[Any], ...]
    limit: int


Effect: TypeAlias = Send | Open | Read | Close | Sleep | Emit | Each
Op: TypeAlias = Generator[Effect, Any, T]


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    base_url: str
    api_key: str | None
    timeout: float = 10.0  # each of connect, write, pool and read, on every call
    stream_timeout: float = 45.0  # a stream silent this long (the server sends keep-alives every 15 s) is dead
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    user_agent: str = "pgcue-client"


DEFAULT_URL = "http://127.0.0.1:8000"  # `pgcue serve`'s default
SLACK = 1.0  # wait() reopens its stream when the stream's read timeout outlasts the deadline by more


def new_key() -> str:
    """A fresh Idempotency-Key."""
    return f"pgcue-{uuid.uuid4().hex}"


def job_id(job: JobRef) -> str:
    return job.id if isinstance(job, JobOut) else str(job)


def _path(job: JobRef, tail: str = "") -> str:
    return f"/api/jobs/{quote(job_id(job), safe='')}{tail}"


def _decode(response: httpx.Response, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(response.content, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise errors.ResponseError(
            f"{response.request.method} {response.request.url.path} answered {response.status_code} "
            f"with a body pgcue does not send: {exc}",
            response.status_code,
        ) from None


def _transport_error(request: httpx.Request, exc: httpx.TransportError) -> errors.TransportError:
    cls = errors.RequestTimeout if isinstance(exc, httpx.TimeoutException) else errors.TransportError
    return cls(f"{request.method} {request.url}: {type(exc).__name__}: {exc or 'connection failed'}")


def outcome(job: JobOut, stop_at_approval: bool = True) -> JobOut | None:
    """What wait() makes of a job as it is: the job when completed, an exception when it
    failed, was cancelled or waits for a person; None while there is more to wait for."""
    if job.state == JobState.COMPLETED:
        return job
    if job.state == JobState.FAILED:
        raise errors.JobFailed(job)
    if job.state == JobState.CANCELLED:
        raise errors.JobCancelled(job)
    if stop_at_approval and job.state == JobState.QUEUED and job.waiting_for == WaitingFor.APPROVAL:
        raise errors.AwaitingApproval(job)
    return None


class Core:
    """Every call of the client as an operation (a generator of effects)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._base = config.base_url.rstrip("/")
        self._headers = {"User-Agent": config.user_agent, "Accept": "application/json"}
        if config.api_key:
            self._headers["Authorization"] = f"Bearer {config.api_key}"

    # --- requests -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | None] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> httpx.Request:
        """One request, with the key and a timeout on every phase of it."""
        merged = dict(self._headers)
        if headers:
            merged.update(headers)
        content = None
        if body is not None:
            content = msgspec.json.encode(body)
            merged["Content-Type"] = "application/json"
        limit = self.config.timeout if timeout is None else timeout
        phases = httpx.Timeout(limit, read=limit if read_timeout is None else read_timeout)
        query = {k: v for k, v in (params or {}).items() if v is not None}
        return httpx.Request(
            method,
            self._base + path,
            params=query,
            headers=merged,
            content=content,
            extensions={"timeout": phases.as_dict()},
        )

    def call(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        params: Mapping[str, str | int | None] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        policy: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> Op[httpx.Response]:
        """Send a request under the retry policy (pgcue.client.retry says what is retried);
        an error answer raises its ApiError."""
        policy = policy or self.config.retry
        attempt = 0
        reached = False  # an earlier try may have been carried out
        while True:
            request = self.request(method, path, params=params, body=body, headers=headers, timeout=timeout)
            try:
                response: httpx.Response = yield Send(request)
            except httpx.TransportError as exc:
                sent = not never_sent(exc)
                reached = reached or sent
                if attempt < policy.retries and retryable(exc) and (idempotent or not sent):
                    yield Sleep(policy.delay(attempt))
                    attempt += 1
                    continue
                raise _transport_error(request, exc) from exc
            status = response.status_code
            if status in RETRY_STATUSES and idempotent and attempt < policy.retries:
                reached = True
                yield Sleep(policy.delay(attempt, errors.retry_after(response.headers)))
                attempt += 1
                continue
            if status == 404 and method == "DELETE" and reached:
                return response  # an earlier try, whose answer was lost, deleted it
            if status >= 400:
                raise errors.api_error(status, response.reason_phrase, response.headers, response.content)
            return response

    def _drain(self, response: httpx.Response) -> Op[bytes]:
        chunks = []
        while (chunk := (yield Read(response))) is not None:
            chunks.append(chunk)
        yield Close(response)
        return b"".join(chunks)

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
    ) -> Op[JobOut]:
        body = NewJobBody(
            type=type,
            channel_id=channel_id,
            payload=dict(payload or {}),
            priority=priority,
            run_at=run_at,
            max_attempts=max_attempts,
            unique_key=unique_key,
            on_conflict=on_conflict,
        )
        return (yield from self.post_job(body, idempotency_key or new_key()))

    def post_job(self, body: NewJobBody, key: str) -> Op[JobOut]:
        """POST /api/jobs with an Idempotency-Key: retried, it returns the first try's job."""
        response = yield from self.call(
            "POST", "/api/jobs", idempotent=True, body=body, headers={"Idempotency-Key": key}
        )
        return _decode(response, JobEnvelope).job

    def enqueue_many(
        self, jobs: Iterable[NewJobBody], *, key_prefix: str | None = None, concurrency: int = 8
    ) -> Op[list[JobOut]]:
        """One POST per job, job i with the Idempotency-Key `<prefix>-<i>`: the same call
        made again with the same prefix makes no job twice."""
        prefix = key_prefix or new_key()
        ops = tuple(self.post_job(job, f"{prefix}-{i}") for i, job in enumerate(jobs))
        if not ops:
            return []
        results: list[tuple[Any, BaseException | None]] = yield Each(ops, max(1, concurrency))
        created: dict[int, JobOut] = {}
        refused: dict[int, errors.ClientError] = {}
        for i, (value, exc) in enumerate(results):
            if exc is None:
                created[i] = value
            elif isinstance(exc, errors.ClientError):
                refused[i] = exc
            else:
                raise exc
        if refused:
            raise errors.EnqueueManyFailed(created, refused)
        return [created[i] for i in range(len(ops))]

    def get(self, job: JobRef, policy: RetryPolicy | None = None, timeout: float | None = None) -> Op[JobOut]:
        response = yield from self.call("GET", _path(job), idempotent=True, policy=policy, timeout=timeout)
        return _decode(response, JobEnvelope).job

    def list_jobs(
        self,
        *,
        channel_id: str | None = None,
        type: str | None = None,
        state: str | None = None,
        page_size: int = 50,
    ) -> Op[None]:
        """Every matching job, newest first, a keyset page at a time (Emit per job)."""
        cursor: str | None = None
        while True:
            params = {"channelId": channel_id, "type": type, "state": state, "limit": page_size, "cursor": cursor}
            response = yield from self.call("GET", "/api/jobs", idempotent=True, params=params)
            page = _decode(response, JobPage)
            for job in page.jobs:
                yield Emit(job)
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def recent(self, channel_id: str | None = None) -> Op[list[JobOut]]:
        response = yield from self.call("GET", "/api/jobs/recent", idempotent=True, params={"channelId": channel_id})
        return _decode(response, JobList).jobs

    def cancel(self, job: JobRef) -> Op[JobOut]:
        response = yield from self.call("POST", _path(job, "/cancel"), idempotent=False)
        return _decode(response, JobEnvelope).job

    def retry(self, job: JobRef) -> Op[JobOut]:
        response = yield from self.call("POST", _path(job, "/retry"), idempotent=False)
        return _decode(response, JobEnvelope).job

    def delete(self, job: JobRef) -> Op[None]:
        yield from self.call("DELETE", _path(job), idempotent=True)

    def clear(self, channel_id: str) -> Op[int]:
        path = f"/api/channels/{quote(channel_id, safe='')}/clear"
        response = yield from self.call("POST", path, idempotent=False)
        return _decode(response, Cleared).deleted

    def resume(self, job: JobRef, decision: Literal["approve", "reject"], feedback: str | None) -> Op[StagesOut]:
        body = ResumeBody(decision=decision, feedback=feedback)
        response = yield from self.call("POST", _path(job, "/resume"), idempotent=False, body=body)
        return _decode(response, StagesOut)

    def stages(self, job: JobRef) -> Op[StagesOut]:
        response = yield from self.call("GET", _path(job, "/stages"), idempotent=True)
        return _decode(response, StagesOut)

    def stats(self) -> Op[Stats]:
        response = yield from self.call("GET", "/api/stats", idempotent=True)
        return _decode(response, Stats)

    # --- artifacts ------------------------------------------------------------------------

    def artifact(
        self,
        job: JobRef,
        sink: IO[bytes],
        *,
        name: str | None = None,
        byte_range: tuple[int, int | None] | None = None,
    ) -> Op[int]:
        """Write the job's artifact (or bytes first..last of it, inclusive; last None for
        the end) to `sink`; returns how many bytes were written. A download cut off midway
        goes on from where it stopped (a Range request), under the retry policy."""
        policy = self.config.retry
        first, last = byte_range if byte_range is not None else (None, None)
        written = 0
        expected: int | None = None  # bytes the whole answer holds, once known
        attempt = 0
        while True:
            headers = {"Accept": "*/*", "Accept-Encoding": "identity"}
            if first is not None or written:
                start = (first or 0) + written
                headers["Range"] = f"bytes={start}-{'' if last is None else last}"
            request = self.request("GET", _path(job, "/artifact"), params={"name": name}, headers=headers)
            try:
                response: httpx.Response = yield Open(request)
                status = response.status_code
                if status >= 400:
                    body = yield from self._drain(response)
                    if status in RETRY_STATUSES and attempt < policy.retries:
                        yield Sleep(policy.delay(attempt, errors.retry_after(response.headers)))
                        attempt += 1
                        continue
                    raise errors.api_error(status, response.reason_phrase, response.headers, body)
                if written and status != 206:
                    yield Close(response)
                    raise errors.ResponseError("the server ignored the Range of a resumed download", status)
                if expected is None and "content-length" in response.headers:
                    expected = int(response.headers["content-length"])
                while (chunk := (yield Read(response))) is not None:
                    sink.write(chunk)
                    written += len(chunk)
                yield Close(response)
                return written
            except httpx.TransportError as exc:
                if expected is not None and written >= expected:
                    return written
                if attempt < policy.retries and retryable(exc):
                    yield Sleep(policy.delay(attempt))
                    attempt += 1
                    continue
                raise _transport_error(request, exc) from exc

    # --- streams --------------------------------------------------------------------------

    def _open_stream(
        self,
        path: str,
        params: Mapping[str, str | int | None] | None,
        last_event_id: str | None,
        read_timeout: float,
        timeout: float | None = None,
    ) -> Op[httpx.Response]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        request = self.request("GET", path, params=params, headers=headers, timeout=timeout, read_timeout=read_timeout)
        try:
            response: httpx.Response = yield Open(request)
            if response.status_code >= 400:
                body = yield from self._drain(response)
                raise errors.api_error(response.status_code, response.reason_phrase, response.headers, body)
        except httpx.TransportError as exc:
            raise _transport_error(request, exc) from exc
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            yield Close(response)
            raise errors.ResponseError(
                f"GET {path} answered {content_type or 'no content type'}, not text/event-stream",
                response.status_code,
            )
        return response

    def _reconnect_delay(self, state: StreamState, failures: int, retry_after: float | None) -> float:
        """The server's `retry:` at first, doubling while reconnecting keeps failing, with jitter."""
        base = state.retry_ms / 1000.0
        ceiling = min(max(self.config.retry.max_backoff, base), base * 2.0 ** min(failures, 30))
        wait = random.uniform(ceiling / 2, ceiling)
        return max(wait, retry_after or 0.0)

    def events(
        self,
        state: StreamState,
        *,
        job: JobRef | None = None,
        channel_id: str | None = None,
        reconnect_for: float | None = 300.0,
    ) -> Op[None]:
        """A job's events (from its first, or after state.last_event_id), ending after its
        final status; or, with no job, every event of the caller's channels (or of one)
        from now (or after state.last_event_id), without end. Emits each event once:
        across reconnects the stream resumes with Last-Event-ID. Gives up (raising the
        last error) when reconnecting has failed for `reconnect_for` seconds on end."""
        if job is not None:
            path, params = _path(job, "/events"), None
        else:
            path, params = "/api/events", {"channelId": channel_id}
        failures = 0
        failing_since: float | None = None
        while True:
            failure: errors.ClientError | None = None
            retry_after: float | None = None
            response: httpx.Response | None = None
            try:
                response = yield from self._open_stream(path, params, state.last_event_id, self.config.stream_timeout)
            except errors.TransportError as exc:
                cause = exc.__cause__
                if isinstance(cause, httpx.TransportError) and not retryable(cause):
                    raise
                failure = exc
            except errors.ApiError as exc:
                if exc.status not in RETRY_STATUSES:
                    raise
                failure, retry_after = exc, exc.retry_after
            if response is None:
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                if failure is not None and reconnect_for is not None and now - failing_since >= reconnect_for:
                    raise failure
                yield Sleep(self._reconnect_delay(state, failures, retry_after))
                failures += 1
                state.reconnects += 1
                continue

            decoder = Decoder(state.last_event_id)
            terminal: JobStatus | None = None
            shutdown: Shutdown | None = None
            try:
                while shutdown is None:
                    chunk = yield Read(response)
                    if chunk is None:
                        break
                    for frame in decoder.feed(chunk):
                        failures, failing_since = 0, None  # the server is answering
                        if frame.retry is not None:
                            state.retry_ms = frame.retry
                        if frame.event == "shutdown":
                            state.last_event_id = frame.id
                            try:
                                shutdown = msgspec.json.decode(frame.data or "{}", type=Shutdown)
                            except (msgspec.DecodeError, msgspec.ValidationError):
                                shutdown = Shutdown(reason="server shutting down")
                            break
                        if frame.data is None:  # no event: the opening frame's cursor, say
                            if frame.id is not None:
                                state.last_event_id = frame.id
                            continue
                        event, raw = decode(frame.event or "message", frame.data)
                        state.last_event_id = frame.id
                        state.last_data = raw
                        terminal = event if is_terminal(event) and isinstance(event, JobStatus) else None
                        yield Emit(event)
            except httpx.TransportError:
                pass  # cut off mid-stream: resume from the last event
            yield Close(response)
            state.reconnects += 1
            if job is not None and terminal is not None and shutdown is None:
                if (yield from self._ended(job, terminal)):
                    return
                continue  # the job went on after that status (it was retried): follow it
            if shutdown is not None:
                yield Sleep(random.uniform(0.5, 1.0) * shutdown.retry_ms / 1000.0)
            else:
                yield Sleep(self._reconnect_delay(state, failures, None))
                failures += 1

    def _ended(self, job: JobRef, terminal: JobStatus) -> Op[bool]:
        """Whether a job whose stream just ended after `terminal` is over: finished, and
        not finished again since (retried after that status, then finished once more)."""
        try:
            current = yield from self.get(job)
        except errors.NotFound:
            return True  # deleted
        if current.state not in FINISHED_STATES:
            return False
        # A status and its job's completedAt are written by one statement: same time.
        return not (current.completed_at and current.completed_at > terminal.created_at)

    # --- waiting --------------------------------------------------------------------------

    def wait(
        self,
        job: JobRef,
        timeout: float,
        *,
        stop_at_approval: bool = True,
        poll_interval: float = 2.0,
    ) -> Op[JobOut]:
        """The job once completed; raises JobFailed, JobCancelled, AwaitingApproval (a
        pipeline run paused for a person, as soon as it pauses) or WaitTimeout.

        Driven by the job's stream: a status that may end the wait is confirmed by reading
        the job (the stream replays the job's history, which may hold a failure that a
        retry undid). Where no stream can be had (429, or a proxy that does not pass
        text/event-stream) it polls every `poll_interval` seconds. The deadline holds
        within about a second, for the synchronous client too: the stream's read timeout
        never outlasts it (a read returns at each keep-alive, and the stream is reopened
        with a shorter read timeout as the deadline nears)."""
        deadline = time.monotonic() + timeout
        current = yield from self.get(job)
        done = outcome(current, stop_at_approval)
        if done is not None:
            return done
        path = _path(job, "/events")
        cursor: str | None = None
        streaming = True
        failures = 0
        retry_ms = 1000
        once = RetryPolicy(retries=0)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise errors.WaitTimeout(current, timeout)
            look = False
            if not streaming:
                yield Sleep(min(poll_interval, left))
                look = True
            else:
                read_timeout = min(self.config.stream_timeout, left)
                response: httpx.Response | None = None
                try:
                    response = yield from self._open_stream(
                        path, None, cursor, read_timeout, timeout=min(self.config.timeout, left)
                    )
                except errors.TransportError:
                    pass
                except errors.ResponseError:
                    streaming = False  # something between us and the API does not pass streams
                except errors.ApiError as exc:
                    if exc.status == 429:
                        streaming = False  # this key's streams are all taken: poll
                    elif exc.status not in RETRY_STATUSES:
                        raise
                if response is None:
                    if streaming:
                        yield Sleep(min(left, self.config.retry.delay(failures)))
                        failures += 1
                    look = True
                else:
                    decoder = Decoder(cursor)
                    pause = 0.0
                    try:
                        while True:
                            chunk = yield Read(response)
                            if chunk is None:
                                look = True  # the stream ended: after a final status, or cut off
                                break
                            for frame in decoder.feed(chunk):
                                failures = 0
                                cursor = frame.id
                                if frame.retry is not None:
                                    retry_ms = frame.retry
                                if frame.event == "shutdown":
                                    pause = random.uniform(0.5, 1.0) * retry_ms / 1000.0
                                elif frame.event == "job:status" and frame.data is not None:
                                    event, _ = decode(frame.event, frame.data)
                                    if isinstance(event, JobStatus) and (
                                        event.state in FINISHED_STATES
                                        or (stop_at_approval and event.waiting_for == WaitingFor.APPROVAL)
                                    ):
                                        look = True
                            if look or pause:
                                break
                            left = deadline - time.monotonic()
                            if left <= 0 or read_timeout - left > SLACK:
                                break  # time out, or reopen with a read timeout within the deadline
                    except httpx.TransportError:
                        look = True  # cut off, or silent past the read timeout: see how the job is
                    yield Close(response)
                    if pause:
                        yield Sleep(min(pause, max(0.0, deadline - time.monotonic())))
            if look:
                left = deadline - time.monotonic()
                try:
                    current = yield from self.get(job, policy=once, timeout=max(0.1, min(self.config.timeout, left)))
                except (errors.TransportError, errors.ServerError, errors.TooManyRequests):
                    continue  # the API is away for now; the loop tries again within the deadline
                done = outcome(current, stop_at_approval)
                if done is not None:
                    return done
