"""What a handler sees while it runs a job: its payload, ways to report, to stop, and its
own artifacts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import msgspec
import structlog

from pgcue.core.artifacts import ArtifactError, LocalArtifacts
from pgcue.core.errors import QuotaExceeded
from pgcue.core.models import ClaimedJob, Snooze
from pgcue.core.states import WaitingFor

if TYPE_CHECKING:
    from pgcue.core.queue import Queue

_encode = msgspec.json.Encoder().encode
OUTPUT_CHUNK = 4000  # characters per job:output event; longer output is split
T = TypeVar("T")


class JobCancelled(Exception):
    """Raised by checkpoint() when the job's cancellation was requested. The job ends
    `cancelled` with errorMessage "Job cancelled by user request", or `reason` when one is
    given (a handler whose work was cancelled elsewhere, after ctx.queue.cancel())."""

    def __init__(self, *args: object, reason: str | None = None) -> None:
        super().__init__(*args)
        self.reason = reason


class LeaseLost(Exception):
    """Raised by checkpoint() when this worker no longer holds the job (its lease expired
    and the job was rescued): nothing it writes about the job will be recorded."""


class Suspended(Exception):
    """Raised by a handler that put its own job back in the queue, in the transaction that
    recorded why (a pipeline run waiting for its child job or for a person): the worker
    records nothing more about this attempt."""


class PermanentError(Exception):
    """Raise it from a handler for a failure no retry can fix: the job fails at once. Its
    errorMessage is "PermanentError: <message>", or with `plain` the message alone (a
    provider's own words, shown to the user as they are)."""

    def __init__(self, *args: object, plain: bool = False) -> None:
        super().__init__(*args)
        self.plain = plain


class RetryLater(Exception):
    """A transient failure (a provider's 429 or 503): the job is retried as after any error,
    while attempts remain and with backoff, but not sooner than `after` seconds (the
    provider's Retry-After). Its errorMessage is the message alone."""

    plain = True

    def __init__(self, message: str, *, after: float = 0.0) -> None:
        super().__init__(message)
        self.after = max(0.0, float(after))


class Result(msgspec.Struct):
    """A handler's return value when it has an artifact: `path` becomes resultPath."""

    data: Any = None
    path: str | None = None


class JobArtifacts:
    """The running job's own artifact folder, and the artifacts of its channel it may read.

    Files are written under a temporary name and published (renamed) when complete, so a
    reader never sees half a file. Publishing counts the file against the channel's quota
    (PGCUE_ARTIFACT_QUOTA_BYTES) and refuses it, with a permanent error that says so, past
    it. Reading another job's artifact (a render's images and audio) is allowed only
    within the job's own channel: another tenant's key is 'no artifact', as a missing one.
    """

    def __init__(self, ctx: JobContext, store: LocalArtifacts, quota: int) -> None:
        self._ctx = ctx
        self.store = store
        self.quota = quota
        self._started = False

    def key(self, name: str) -> str:
        return self.store.key(self._ctx.id, name)

    def path(self, name: str) -> Path:
        """Where the published file `name` of this job is (it may not exist yet)."""
        return self.store.path(self._ctx.id, name)

    async def begin(self) -> Path:
        """The job's folder, cleared of a previous attempt's temporary files. Recorded in the
        database first, so that deleting the job removes the folder."""
        if not self._started:
            await self._ctx.queue.artifacts.folder_started(self._ctx.id, self._ctx.fence)
            self._started = True
        return self.store.begin(self._ctx.id)

    @asynccontextmanager
    async def writing(self, name: str) -> AsyncIterator[Path]:
        """A temporary path to write `name` to; published when the block ends without
        error (after the quota allows it), removed otherwise."""
        if not self._started:
            await self.begin()
        final = self.path(name)
        old = final.stat().st_size if final.is_file() else 0
        with self.store.writing(self._ctx.id, name) as temp:
            yield temp
            if temp.exists():
                try:
                    await self._ctx.queue.artifacts.reserve(
                        self._ctx.id, self._ctx.fence, temp.stat().st_size - old, self.quota
                    )
                except QuotaExceeded as exc:
                    raise PermanentError(str(exc)) from None

    async def discard(self) -> None:
        """Remove everything the job wrote (a failed download leaves nothing behind)."""
        self.store.discard(self._ctx.id)
        if self._started:
            await self._ctx.queue.artifacts.released(self._ctx.id, self._ctx.fence)

    async def open(self, key: Any, field: str) -> Path:
        """The file behind an artifact key ("<job id>/<file>") of a job in this job's own
        channel; PermanentError naming `field` for anything else."""
        missing = PermanentError(f"{field}: no artifact {str(key)[:100]!r} in this channel (expected <job id>/<file>)")
        if not isinstance(key, str):
            raise PermanentError(f"{field} must be an artifact key, <job id>/<file>")
        owner, _, _ = key.partition("/")
        try:
            owner_id = uuid.UUID(owner)
        except ValueError:
            raise missing from None
        channels = await self._ctx.queue.channels_of([owner_id])
        if channels.get(owner_id) != self._ctx.job.channel_id:
            raise missing
        try:
            path = self.store.local_path(key)
        except ArtifactError:
            path = None
        if path is None:
            raise missing
        return path


class JobContext:
    """A running job, its payload, and the handler's ways to report and to stop.

    progress() and output() only buffer: the worker writes what was buffered for all its
    jobs in one statement every PGCUE_REPORT_INTERVAL, so a chatty handler costs one write
    per interval, not one per call. stage() is written before it returns.
    """

    def __init__(
        self,
        job: ClaimedJob,
        reporter: Any,
        log: structlog.typing.FilteringBoundLogger,
        *,
        queue: Queue,
        store: LocalArtifacts,
        quota: int = 0,
    ) -> None:
        self.job = job
        self.log = log
        self.queue = queue  # the worker's queue façade (pipelines enqueue their stages' jobs)
        self._reporter = reporter
        self._cancel = asyncio.Event()
        self.lost = False
        if job.cancel_requested:
            self._cancel.set()
        self.artifacts = JobArtifacts(self, store, quota)
        # Buffered since the last write:
        self.pending_progress: int | None = None
        self.pending_message: str | None = None
        self.pending_stage: str | None = None
        self.pending_events: list[tuple[str, bytes]] = []
        self._output: list[str] = []

    @property
    def id(self) -> uuid.UUID:
        return self.job.id

    @property
    def payload(self) -> Any:
        return self.job.payload

    def payload_as(self, kind: type[T]) -> T:
        """The payload decoded into `kind` (the type's payload Struct); PermanentError
        naming the field when it does not fit (the API checks the same schema first)."""
        try:
            return msgspec.convert(self.payload, kind)
        except msgspec.ValidationError as exc:
            raise PermanentError(f"payload: {str(exc).replace('`$', '`payload')}") from None

    @property
    def attempt(self) -> int:
        return self.job.attempts

    @property
    def fence(self) -> int:
        return self.job.fence

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    async def wait_cancelled(self) -> None:
        """Returns when cancellation is requested (to stop a subprocess, say)."""
        await self._cancel.wait()

    def request_cancel(self) -> None:
        self._cancel.set()

    def mark_lost(self) -> None:
        self.lost = True
        self._cancel.set()

    async def cancellable(self, work: Awaitable[T]) -> T:
        """Await `work`, stopping it the moment cancellation is requested (or the lease is
        lost): then it is cancelled and JobCancelled (or LeaseLost) is raised. For work
        that waits on something slow (a download from a server that trickles a byte every
        few seconds) and so cannot reach a checkpoint in time."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._cancel.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            stop.cancel()
        if not task.done():
            task.cancel()
            try:
                await task
            except BaseException:
                pass
            await self.checkpoint()  # raises JobCancelled or LeaseLost
        return task.result()

    # --- reporting -------------------------------------------------------------------

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report progress, 0–100 (clamped), with an optional message."""
        self.pending_progress = max(0, min(100, int(percent)))
        if message is not None:
            self.pending_message = _storable(message)[:500]
        self._reporter.touch(self)

    def output(self, text: str) -> None:
        """Append streamed output (a model's tokens, a tool's log lines)."""
        if text:
            self._output.append(_storable(text))
            self._reporter.touch(self)

    async def stage(self, name: str, **info: Any) -> None:
        """Enter stage `name`; recorded (with `stage:updated`) before this returns."""
        self.pending_stage = _storable(name)[:200]
        self.pending_events.append(("stage:updated", _encode({"stage": self.pending_stage, **info})))
        self._reporter.touch(self)  # flush() writes only the jobs touched since the last write
        await self._reporter.flush()

    async def checkpoint(self) -> None:
        """A safe point to stop: raises JobCancelled if cancellation was requested, or
        LeaseLost if this worker no longer holds the job."""
        if self.lost:
            raise LeaseLost(f"job {self.id} is no longer held by this worker (fence {self.fence})")
        if self._cancel.is_set():
            raise JobCancelled(f"job {self.id} cancelled")
        await asyncio.sleep(0)

    # --- outside work ----------------------------------------------------------------------

    @property
    def handler_state(self) -> dict[str, Any] | None:
        """What this job's handler recorded about its outside work in an earlier claim (a
        provider's prediction id), kept across snoozes, retries and rescues; None when it
        has started none (a person's retry forgets it)."""
        return self.job.handler_state

    async def record_outside_work(self, state: dict[str, Any] | None) -> bool:
        """Record `state` before starting outside work (the idempotency key a prediction
        will be created with), so that a crash cannot lose it; None clears it. Starting
        takes a place under the type's channel_concurrency, counted over the channel's
        jobs with outside work in flight, snoozed ones included: False when none is left
        (nothing was recorded: snooze and try again). LeaseLost when the job is no longer
        held."""
        recorded = await self.queue.record_outside_work(self.id, self.fence, self.job.type, self.job.channel_id, state)
        if recorded is None:
            self.mark_lost()
            raise LeaseLost(f"job {self.id} is no longer held by this worker (fence {self.fence})")
        if recorded:
            self.job.handler_state = state
        return recorded

    async def snooze(
        self, seconds: float, state: dict[str, Any] | None = None, waiting_for: WaitingFor = WaitingFor.PROVIDER
    ) -> NoReturn:
        """Wait `seconds` for outside work without holding a worker slot: what was reported
        is written, then the job goes back to the queue (`queued`, waitingFor `provider`)
        without charging its attempt, with `state` (None: unchanged) recorded for its next
        claim, which calls the handler again. Raises Suspended (let it propagate), or
        JobCancelled when its cancellation was requested (stop the outside work, then
        re-raise), or LeaseLost."""
        await self._reporter.settle(self)  # once parked, a report of it would be refused (fenced)
        outcome = await self.queue.snooze(self.id, self.fence, seconds, waiting_for, state)
        if outcome == Snooze.SNOOZED:
            raise Suspended()
        if outcome == Snooze.CANCEL:
            self.request_cancel()
            raise JobCancelled(f"job {self.id} cancelled")
        self.mark_lost()
        raise LeaseLost(f"job {self.id} is no longer held by this worker (fence {self.fence})")

    # --- for the reporter --------------------------------------------------------------

    def has_pending(self) -> bool:
        return bool(self.pending_events or self._output or self.pending_progress is not None or self.pending_stage)

    def take_pending(self) -> tuple[int | None, str | None, str | None, tuple[tuple[str, bytes], ...]]:
        events = list(self.pending_events)
        if self._output:
            text = "".join(self._output)
            events.extend(
                ("job:output", _encode({"text": text[i : i + OUTPUT_CHUNK]})) for i in range(0, len(text), OUTPUT_CHUNK)
            )
        if self.pending_progress is not None:
            events.append(
                ("job:progress", _encode({"progress": self.pending_progress, "message": self.pending_message}))
            )
        taken = (self.pending_progress, self.pending_message, self.pending_stage, tuple(events))
        self.pending_progress = self.pending_message = self.pending_stage = None
        self.pending_events = []
        self._output = []
        return taken

    def restore_pending(self, taken: tuple[int | None, str | None, str | None, tuple[tuple[str, bytes], ...]]) -> None:
        """Put back what take_pending() gave when its write failed, before anything newer:
        buffered output is never dropped on a database blip."""
        progress, message, stage, events = taken
        self.pending_events = [*events, *self.pending_events]
        if self.pending_progress is None:
            self.pending_progress, self.pending_message = progress, message
        if self.pending_stage is None:
            self.pending_stage = stage
        self._reporter.touch(self)


def _storable(text: str) -> str:
    """Text PostgreSQL can store: no NUL, no lone surrogate."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode()
