"""The queue façade: the one caller of pgcue's statements (sql/). Routes, workers, the
maintenance leader and the command line call its methods and get pgcue's own types back
(pgcue.core.models), never driver rows. It knows nothing of HTTP.

`Queue` holds the job operations (enqueue, read, a person's actions, a worker's claims and
writes); its parts hold the rest, each in its own module:

    queue.keys       callers and API keys                 (keys.py)
    queue.sessions   the panel's browser sessions         (sessions.py)
    queue.stages     pipeline runs' stages                (stages.py)
    queue.events     the event log SSE streams read       (event_log.py)
    queue.fleet      workers, policies, pauses, stats     (fleet.py)
    queue.upkeep     rescue, prune, schedules, leadership (upkeep.py)
    queue.artifacts  artifact usage and deletions         (artifacts.py)

Every state change writes its event row and notifies in the same statement, so an event
exists if and only if the change committed, and each statement notifies once.

`async with queue.transaction() as tx:` gives a Queue whose every call runs in one
transaction on one connection (a pipeline's orchestrator makes its moves that way).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import psycopg

from pgcue.core import db, metrics
from pgcue.core.errors import InvalidTransition, JobNotFound, UnknownJobType
from pgcue.core.models import (
    Claimed,
    ClaimedJob,
    Completion,
    Failure,
    Job,
    JobType,
    NewJob,
    ProgressReport,
    Snooze,
)
from pgcue.core.queue.artifacts import Artifacts
from pgcue.core.queue.enqueue import (
    all_resolved,
    clean_text,
    enqueue_args,
    json_text,
    keyless_args,
    resolve_conflicts,
)
from pgcue.core.queue.event_log import EventLog
from pgcue.core.queue.fleet import Fleet
from pgcue.core.queue.keys import Keys
from pgcue.core.queue.sessions import Sessions
from pgcue.core.queue.stages import Stages
from pgcue.core.queue.types import TypeCatalog
from pgcue.core.queue.upkeep import Upkeep
from pgcue.core.statements import Executor, Statements, statements_for
from pgcue.core.states import RESULT_EVENTS, FailureKind, JobState, WaitingFor

__all__ = ["Queue", "enqueue_many_sync", "json_text", "retry_delay"]


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: base·2^(attempt-1), capped, then scaled by 0.75–1.25
    so that jobs which failed together do not all come back together."""
    return min(cap, base * 2 ** max(0, attempt - 1)) * random.uniform(0.75, 1.25)


class Queue:
    """Queue operations over an asyncpg pool (or a connection the caller owns)."""

    def __init__(self, pool: Executor, schema: str = "pgcue", *, _catalog: TypeCatalog | None = None) -> None:
        self.pool = pool
        self.schema = schema
        self.sql: Statements = statements_for(schema)
        self.types = _catalog or TypeCatalog(self.job_types)
        self.keys = Keys(self)
        self.sessions = Sessions(self)
        self.stages = Stages(self)
        self.events = EventLog(self)
        self.fleet = Fleet(self)
        self.upkeep = Upkeep(self)
        self.artifacts = Artifacts(self)

    # --- connections -----------------------------------------------------------------

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        if isinstance(self.pool, asyncpg.Pool):
            async with self.pool.acquire() as conn:
                yield conn
        else:
            yield self.pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queue]:
        """A Queue whose calls all run in one transaction (committed when the block ends
        without an error); inside another transaction, a savepoint."""
        async with self.connection() as conn, conn.transaction():
            yield Queue(conn, self.schema, _catalog=self.types)

    async def ping(self) -> None:
        await self.sql.fetch(self.pool, "ping")

    async def schema_version(self) -> int:
        row = await self.sql.fetchrow(self.pool, "schema_version")
        return int(row["version"]) if row else 0

    # --- enqueue -------------------------------------------------------------------

    async def enqueue_many(self, jobs: Sequence[NewJob], *, conn: Any = None, _retries: int = 3) -> list[uuid.UUID]:
        """Enqueue many jobs in one statement; returns their ids in input order.

        A job whose (owner, idempotency key) is taken is not inserted: its id is the
        existing job's. A unique job that meets a queued or running one of the same
        (type, channel, unique key) follows its on_conflict policy. Pass `conn` (an
        asyncpg connection) to enqueue inside the caller's own transaction.
        """
        if not jobs:
            return []
        ids, args = enqueue_args(jobs)
        await self.types.check(jobs)
        executor = conn or self.pool
        keyless = keyless_args(args)
        try:
            if keyless is not None:
                # Nothing can conflict: the statement without ON CONFLICT, which answers
                # with a count (every job went in, or it raised and none did).
                await self.sql.fetchrow(executor, "enqueue_jobs_keyless", *keyless)
                metrics.jobs_enqueued([job.type for job in jobs])
                return ids
            rows = await self.sql.fetch(executor, "enqueue_jobs", *args)
        except asyncpg.ForeignKeyViolationError:
            raise UnknownJobType(sorted({job.type for job in jobs})) from None
        inserted = {row["id"] for row in rows}
        metrics.jobs_enqueued([job.type for job, i in zip(jobs, ids, strict=True) if i in inserted])
        if len(inserted) == len(jobs):
            return ids
        resolver = resolve_conflicts(jobs, ids, inserted)
        try:
            step = next(resolver)
            while True:
                step = resolver.send(await self.sql.fetch(executor, step[0], *step[1]))
        except StopIteration as done:
            out: list[uuid.UUID | None] = done.value
        gone = [n for n, job_id in enumerate(out) if job_id is None]
        if gone and _retries > 0:  # the conflicting job finished meanwhile: insert again
            again = await self.enqueue_many([jobs[n] for n in gone], conn=conn, _retries=_retries - 1)
            for n, job_id in zip(gone, again, strict=True):
                out[n] = job_id
        return all_resolved(out)

    async def enqueue(self, job: NewJob) -> Job:
        """Enqueue one job and return it as stored (the existing job for a repeated key)."""
        (stored,) = await self.enqueue_returning([job])
        if stored is not None:
            return stored
        # Its key is taken: resolve it (the existing job, or on_conflict's answer) and read
        # the job back in the same transaction.
        async with self.transaction() as tx:
            (job_id,) = await tx.enqueue_many([job])
            return await tx.get(job_id)

    async def enqueue_returning(self, jobs: Sequence[NewJob]) -> list[Job | None]:
        """Enqueue jobs in one statement (so all of them or, on an error, none) and return
        each inserted job as stored, in input order, in the same round trip: the job as
        enqueued, not as a fast worker may have claimed it since. None for a job the
        insert skipped because its idempotency or unique key is taken; enqueue() it alone
        to resolve it."""
        if not jobs:
            return []
        ids, args = enqueue_args(jobs)
        await self.types.check(jobs)
        try:
            rows = await self.sql.fetch(self.pool, "enqueue_jobs_returning", *args)
        except asyncpg.ForeignKeyViolationError:
            raise UnknownJobType(sorted({job.type for job in jobs})) from None
        stored = {row["id"]: Job.from_row(row) for row in rows}
        metrics.jobs_enqueued([job.type for job in stored.values()])
        return [stored.get(i) for i in ids]

    # --- read ----------------------------------------------------------------------

    async def get(self, job_id: uuid.UUID | str) -> Job:
        rows = await self.get_many([job_id])
        if not rows:
            raise JobNotFound(job_id)
        return rows[0]

    async def get_many(self, job_ids: Sequence[uuid.UUID | str]) -> list[Job]:
        ids = [_as_uuid(i) for i in job_ids]
        rows = await self.sql.fetch(self.pool, "get_jobs", ids)
        return [Job.from_row(row) for row in rows]

    async def list_jobs(
        self,
        *,
        channels: Sequence[str] | None = None,
        type: str | None = None,
        state: str | None = None,
        before: tuple[datetime, uuid.UUID] | None = None,
        limit: int = 50,
        types: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        created_after: datetime | None = None,
        include_children: bool = True,
        waiting_for: str | None = None,
    ) -> list[Job]:
        """Jobs newest first, in `channels` (None: every channel), of `type` (or any of
        `types`) in `state` (or any of `states`), created at or after `created_after`;
        `before` is the (created_at, id) keyset cursor of the last page. Without
        `include_children` a pipeline run's stage jobs are left out; `waiting_for` keeps
        the queued jobs that wait for it.

        In named channels every page is read on an index (sql/list_jobs.sql,
        sql/list_jobs_filtered.sql): its cost does not grow with the channel's history."""
        created, last_id = before if before else (TOP, LAST_ID)
        after = created_after or BOTTOM
        if channels is None:
            rows = await self.sql.fetch(
                self.pool, "list_all_jobs", type, state, created, last_id, after, include_children, waiting_for, limit
            )
            return [Job.from_row(r) for r in rows]
        scope = list(channels)
        if not scope:
            return []
        type_list = [type] if type is not None else None if types is None else list(types)
        state_list = [state] if state is not None else None if states is None else list(states)
        if waiting_for is not None:  # only a queued job waits
            state_list = [s for s in state_list or [JobState.QUEUED] if s == JobState.QUEUED]
        if type_list is None and state_list is None:
            rows = await self.sql.fetch(self.pool, "list_jobs", scope, created, last_id, after, include_children, limit)
        else:
            if state_list is None:
                state_list = [s.value for s in JobState]
            if not state_list or type_list == []:
                return []
            rows = await self.sql.fetch(
                self.pool,
                "list_jobs_filtered",
                scope,
                type_list,
                state_list,
                created,
                last_id,
                after,
                include_children,
                waiting_for,
                limit,
            )
        return [Job.from_row(r) for r in rows]

    async def children(
        self,
        parent_id: uuid.UUID,
        channels: Sequence[str] | None,
        *,
        before: tuple[datetime, uuid.UUID] | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """A pipeline run's child jobs in `channels` (None: any), newest first."""
        created, last_id = before if before else (TOP, LAST_ID)
        scope = None if channels is None else list(channels)
        rows = await self.sql.fetch(self.pool, "list_child_jobs", parent_id, scope, created, last_id, limit)
        return [Job.from_row(r) for r in rows]

    async def recent(
        self, channels: Sequence[str] | None, limit: int = 6, *, include_children: bool = False
    ) -> list[Job]:
        """The most recently completed jobs of `channels` (None: every channel); a
        pipeline run's stage jobs only with `include_children`."""
        if channels is None:
            rows = await self.sql.fetch(self.pool, "recent_completed_jobs_all", limit, include_children)
        else:
            rows = await self.sql.fetch(self.pool, "recent_completed_jobs", list(channels), limit, include_children)
        return [Job.from_row(r) for r in rows]

    async def count_jobs(
        self,
        channel_id: str,
        states: Sequence[str],
        *,
        types: Sequence[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        include_children: bool = False,
        cap: int = 10_000,
    ) -> dict[str, int]:
        """{state: jobs} of one channel, each count stopping at `cap` (so a count costs at
        most `cap` index entries per state, whatever the channel holds)."""
        rows = await self.sql.fetch(
            self.pool,
            "count_jobs",
            channel_id,
            None if types is None else list(types),
            list(states),
            created_after or BOTTOM,
            created_before or TOP,
            include_children,
            cap,
        )
        return {r["state"]: int(r["jobs"]) for r in rows}

    async def find_by_id_prefix(self, prefix: str, channels: Sequence[str], limit: int = 50) -> list[Job]:
        """Jobs in `channels` whose id starts with `prefix` (hex digits, at least 8; dashes
        are ignored), newest first."""
        digits = prefix.replace("-", "").lower()
        if not 8 <= len(digits) <= 32 or any(c not in "0123456789abcdef" for c in digits):
            raise ValueError("an id prefix is 8 to 32 hex digits")
        low = uuid.UUID(digits.ljust(32, "0"))
        high = uuid.UUID(digits.ljust(32, "f"))
        rows = await self.sql.fetch(self.pool, "find_jobs_by_id_prefix", low, high, list(channels), limit)
        return [Job.from_row(r) for r in rows]

    async def latest_completed(self, channel_id: str, job_type: str) -> Job | None:
        """The channel's most recently completed job of `job_type`, or None."""
        row = await self.sql.fetchrow(self.pool, "latest_completed_of_type", channel_id, job_type)
        return None if row is None else Job.from_row(row)

    async def channels_of(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """{job id: channel} for the jobs that exist."""
        rows = await self.sql.fetch(self.pool, "job_channels", list(job_ids))
        return {r["id"]: r["channel_id"] for r in rows}

    async def job_types(self) -> list[JobType]:
        rows = await self.sql.fetch(self.pool, "list_job_types")
        return [JobType(**{k: row[k] for k in JobType.__struct_fields__}) for row in rows]

    async def register_types(self, types: Sequence[JobType]) -> None:
        await self.sql.execute(self.pool, "upsert_job_types", *_type_columns(types))
        self.types.forget()

    # --- a worker's claims and writes ----------------------------------------------------

    async def claim(
        self,
        job_type: str,
        limit: int,
        worker_id: str,
        lease_seconds: float,
        *,
        cursor: str = "",
        limited: bool = False,
    ) -> Claimed:
        """Take up to `limit` runnable jobs of one type, round-robin across channels from
        `cursor`; each starts its next attempt under a new fence. `limited` types
        (fleet-wide, per-channel or rate limits) claim under a per-type lock that makes
        the limits exact."""
        lease = float(lease_seconds)
        if not limited:
            all_rows = await self.sql.fetch(self.pool, "claim_jobs", job_type, limit, worker_id, lease, cursor, None)
        else:
            async with self.connection() as conn, conn.transaction():
                await self.sql.execute(conn, "lock_claims", job_type)
                budget = await self.sql.fetchrow(conn, "claim_budget", job_type, limit)
                if budget is None or budget["budget"] <= 0:
                    return Claimed([], cursor)
                all_rows = await self.sql.fetch(
                    conn,
                    "claim_jobs",
                    job_type,
                    budget["budget"],
                    worker_id,
                    lease,
                    cursor,
                    budget["channel_concurrency"],
                )
                claimed = sum(1 for r in all_rows if r["id"] is not None)
                if claimed and budget["rate_limited"]:
                    await self.sql.execute(conn, "record_starts", job_type, claimed)
        meta = all_rows[0] if all_rows else None
        fields = ClaimedJob.__struct_fields__
        jobs = [ClaimedJob(**{k: r[k] for k in fields}) for r in all_rows if r["id"] is not None]
        if meta is None or meta["next_cursor"] is None:
            return Claimed(jobs, cursor)
        return Claimed(jobs, meta["next_cursor"], ring_full=meta["ring_channels"] >= limit)

    async def heartbeat(self, worker_id: str, leases: Sequence[tuple[uuid.UUID, int, float]]) -> dict[uuid.UUID, bool]:
        """Extend the leases of the jobs a worker holds, each (id, fence, lease seconds);
        returns {job id: cancel requested} for the jobs it still holds. A job missing from
        the answer was lost."""
        ids = [lease[0] for lease in leases]
        fences = [lease[1] for lease in leases]
        seconds = [float(lease[2]) for lease in leases]
        rows = await self.sql.fetch(self.pool, "extend_leases", ids, fences, seconds, worker_id)
        return {row["id"]: row["cancel_requested"] for row in rows}

    async def record(self, completions: Sequence[Completion], failures: Sequence[Failure]) -> dict[uuid.UUID, str]:
        """Record finished attempts (fenced); returns {job id: new state} for the rows that
        changed. A batch the database refuses because of one outcome's values (a NUL in a
        result path, say) is recorded one outcome at a time: the outcome at fault fails
        its job with the reason, every other one is recorded. Raises only when the
        database is unavailable (then nothing was recorded; call again)."""
        try:
            return await self._record(completions, failures)
        except Exception as exc:
            if db.unavailable(exc):
                raise
        states: dict[uuid.UUID, str] = {}
        for c in completions:
            try:
                states.update(await self._record([c], []))
            except Exception as exc:
                if db.unavailable(exc):
                    raise
                refused = Failure(c.job_id, c.fence, f"the result could not be stored: {db.describe(exc)}", "permanent")
                states.update(await self._record([], [refused]))
        for f in failures:
            try:
                states.update(await self._record([], [f]))
            except Exception as exc:
                if db.unavailable(exc):
                    raise
                plain = Failure(f.job_id, f.fence, f"{f.kind}: the error could not be stored", FailureKind.PERMANENT)
                states.update(await self._record([], [plain]))
        return states

    async def complete(self, completions: Sequence[Completion]) -> dict[uuid.UUID, str]:
        """Record successful attempts (see record)."""
        return await self.record(completions, ())

    async def fail(self, failures: Sequence[Failure]) -> dict[uuid.UUID, str]:
        """Record failed attempts: each retries after its backoff while attempts remain
        and the error is not permanent, else fails (see record)."""
        return await self.record((), failures)

    async def _record(self, completions: Sequence[Completion], failures: Sequence[Failure]) -> dict[uuid.UUID, str]:
        if completions and failures:  # both or neither: one transaction
            async with self.transaction() as tx:
                return await tx._record_on(completions, failures)
        return await self._record_on(completions, failures)

    async def _record_on(self, completions: Sequence[Completion], failures: Sequence[Failure]) -> dict[uuid.UUID, str]:
        states: dict[uuid.UUID, str] = {}
        if completions:
            rows = await self.sql.fetch(
                self.pool,
                "complete_jobs",
                [c.job_id for c in completions],
                [c.fence for c in completions],
                [None if c.result is None else json_text(c.result, "result") for c in completions],
                [c.result_path for c in completions],
                list(RESULT_EVENTS),
                [str(k) for k in RESULT_EVENTS.values()],
            )
            states.update((row["id"], row["state"]) for row in rows)
        if failures:
            rows = await self.sql.fetch(
                self.pool,
                "fail_jobs",
                [f.job_id for f in failures],
                [f.fence for f in failures],
                [clean_text(f.error) for f in failures],
                [str(f.kind) for f in failures],
                [f.retry_in for f in failures],
            )
            states.update((row["id"], row["state"]) for row in rows)
        return states

    async def snooze(
        self,
        job_id: uuid.UUID,
        fence: int,
        seconds: float,
        waiting_for: WaitingFor,
        handler_state: dict[str, Any] | None = None,
    ) -> Snooze:
        """Park a running job for `seconds` while outside work goes on (a provider's
        prediction): back in the queue, runnable again then, without charging its attempt
        and without holding a worker; `handler_state` (None: unchanged) is what its next
        claim finds in ClaimedJob.handler_state. Fenced: SNOOZED, or CANCEL when its
        cancellation was requested (it stays running, for the worker to stop the outside
        work), or LOST when this worker no longer holds it."""
        state = None if handler_state is None else json_text(handler_state, "handler state")
        row = await self.sql.fetchrow(self.pool, "snooze_job", job_id, fence, float(seconds), str(waiting_for), state)
        if row is None:
            return Snooze.LOST
        if row["snoozed"]:
            return Snooze.SNOOZED
        # Not snoozed though held when the statement began: a cancel, or (rarely) a rescue
        # that took the job meanwhile. Only a job still held may stop its outside work.
        try:
            job = await self.get(job_id)
        except JobNotFound:
            return Snooze.LOST
        if job.fence == fence and job.state == "running" and job.cancel_requested:
            return Snooze.CANCEL
        return Snooze.LOST

    async def record_outside_work(
        self, job_id: uuid.UUID, fence: int, job_type: str, channel_id: str, handler_state: dict[str, Any] | None
    ) -> bool | None:
        """Record the outside work a running job is about to start (its handler_state), or
        clear it (None). Starting takes a place under the type's channel_concurrency,
        counted over the channel's jobs of the type with outside work in flight, parked
        or running: False when there is none left (nothing recorded; a job that already
        has outside work always has its place). None when the job is no longer held."""
        state = None if handler_state is None else json_text(handler_state, "handler state")
        async with self.connection() as conn, conn.transaction():
            if state is not None:
                await self.sql.execute(conn, "lock_outside_work", job_type, channel_id)
            row = await self.sql.fetchrow(conn, "record_outside_work", job_id, fence, state)
        if row is None:
            return None
        return bool(row["recorded"])

    async def release(
        self, items: Sequence[tuple[uuid.UUID, int]], reason: str = "worker shutdown"
    ) -> dict[uuid.UUID, str]:
        """Give running jobs (id, fence) back without charging the attempt (shutdown, or a
        job claimed ahead that never got a slot); `reason` goes in their `queued` event."""
        if not items:
            return {}
        rows = await self.sql.fetch(self.pool, "release_jobs", [i[0] for i in items], [i[1] for i in items], reason)
        return {row["id"]: row["state"] for row in rows}

    async def report_progress(self, reports: Sequence[ProgressReport]) -> set[uuid.UUID]:
        """Write the coalesced progress, stage and output of running jobs (fenced); returns
        the ids still held."""
        if not reports:
            return set()
        ev_ids, ev_kinds, ev_data = [], [], []
        for r in reports:
            for kind, data in r.events:
                ev_ids.append(r.job_id)
                ev_kinds.append(kind)
                ev_data.append(data.decode())
        rows = await self.sql.fetch(
            self.pool,
            "report_progress",
            [r.job_id for r in reports],
            [r.fence for r in reports],
            [r.progress for r in reports],
            [r.message for r in reports],
            [r.stage for r in reports],
            ev_ids,
            ev_kinds,
            ev_data,
        )
        return {row["id"] for row in rows}

    # --- a person's actions ------------------------------------------------------------

    async def cancel(self, job_id: uuid.UUID | str) -> Job:
        """Cancel a queued job now, or ask a running one to stop at its next checkpoint."""
        row = await self.sql.fetchrow(self.pool, "cancel_job", _as_uuid(job_id))
        _check_transition(row, job_id, "cancel", "queued or running")
        return await self.get(job_id)

    async def retry(self, job_id: uuid.UUID | str) -> Job:
        """Put a failed or cancelled job back in the queue with fresh attempts."""
        row = await self.sql.fetchrow(self.pool, "retry_job", _as_uuid(job_id))
        _check_transition(row, job_id, "retry", "failed or cancelled")
        return await self.get(job_id)

    async def delete(self, job_id: uuid.UUID | str) -> None:
        """Delete a finished job, its events and (soon after, by the maintenance leader)
        its artifacts."""
        rows = await self.sql.fetch(self.pool, "delete_jobs", [_as_uuid(job_id)])
        if not rows:
            job = await self.get(job_id)  # raises JobNotFound
            raise InvalidTransition(job_id, job.state, "delete", "completed, failed or cancelled")

    async def retry_many(self, job_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        """Retry many jobs in one statement, each as retry() would; returns those retried
        (a job no longer failed or cancelled is left alone)."""
        rows = await self.sql.fetch(self.pool, "retry_jobs", list(job_ids))
        return [r["id"] for r in rows]

    async def cancel_many(self, job_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        """Cancel many jobs in one statement, each as cancel() would; returns those the
        cancel applied to (a finished job is left alone)."""
        rows = await self.sql.fetch(self.pool, "cancel_jobs", list(job_ids))
        return [r["id"] for r in rows]

    async def delete_many(self, job_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        """Delete many finished jobs in one statement; returns those deleted."""
        rows = await self.sql.fetch(self.pool, "delete_jobs", list(job_ids))
        return [r["id"] for r in rows]

    async def clear_finished(self, channel_id: str) -> int:
        """Delete every finished job of a channel; returns how many."""
        row = await self.sql.fetchrow(self.pool, "clear_finished_jobs", channel_id)
        return int(row["deleted"]) if row else 0


# The keyset bounds of a first page, and of "any creation time": always-set bounds keep
# the cursor an index condition in every plan, generic ones included.
TOP = datetime.max.replace(tzinfo=UTC)  # asyncpg sends these two as 'infinity' and '-infinity'
BOTTOM = datetime.min.replace(tzinfo=UTC)
LAST_ID = uuid.UUID(int=(1 << 128) - 1)


def _check_transition(row: Any, job_id: object, action: str, allowed: str) -> None:
    if row is None:
        raise JobNotFound(job_id)
    if row["state"] is None:
        raise InvalidTransition(job_id, row["prev_state"], action, allowed)


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise JobNotFound(value) from None


def _type_columns(types: Sequence[JobType]) -> list[list[Any]]:
    fields = (
        "name",
        "plan",
        "concurrency",
        "memory_mb",
        "lease_seconds",
        "timeout_seconds",
        "max_attempts",
        "description",
        "global_concurrency",
        "channel_concurrency",
        "rate_limit",
        "rate_period_seconds",
    )
    columns = [[getattr(t, f) for t in types] for f in fields]
    columns.append([None if t.payload_schema is None else json_text(t.payload_schema, "payload schema") for t in types])
    return columns


# --- enqueue from synchronous code (psycopg), inside the caller's transaction ----------


def enqueue_many_sync(conn: psycopg.Connection[Any], jobs: Sequence[NewJob], schema: str = "pgcue") -> list[uuid.UUID]:
    """Enqueue many jobs on a psycopg connection; joins the caller's transaction if one is
    open. The same rules as Queue.enqueue_many (payload schemas are checked by the
    enqueue paths of the API and Queue; this path checks the fields)."""
    if not jobs:
        return []
    sql = statements_for(schema)
    ids, args = enqueue_args(jobs)
    try:
        rows = sql.fetch_sync(conn, "enqueue_jobs", *args)
    except psycopg.errors.ForeignKeyViolation:
        raise UnknownJobType(sorted({job.type for job in jobs})) from None
    inserted = {row["id"] for row in rows}
    metrics.jobs_enqueued([job.type for job, i in zip(jobs, ids, strict=True) if i in inserted])
    if len(inserted) == len(jobs):
        return ids
    resolver = resolve_conflicts(jobs, ids, inserted)
    try:
        step = next(resolver)
        while True:
            step = resolver.send(sql.fetch_sync(conn, step[0], *step[1]))
    except StopIteration as done:
        return all_resolved(done.value)
