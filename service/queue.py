"""The queue's operations: enqueue, claim, heartbeat, complete, fail/retry, cancel,
release, rescue, prune. It knows nothing of HTTP; every statement is in service/sql/.

Every state change writes its event row and notifies in the same statement, so an event
exists if and only if the change committed, and each statement notifies once.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import msgspec
import psycopg

from service.errors import InvalidJob, InvalidTransition, JobNotFound, UnknownJobType
from service.models import ClaimedJob, Job, JobType, NewJob, uuid7
from service.queries import Sql, sql_for

_encode = msgspec.json.Encoder().encode

MAX_PRIORITY = 1000
FINISHED = ("completed", "failed", "cancelled")

Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True, slots=True)
class Completion:
    job_id: uuid.UUID
    attempt: int
    result: Any = None
    result_path: str | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    job_id: uuid.UUID
    attempt: int
    error: str
    kind: str = "error"  # error | permanent | timeout | cancelled
    retry_in: float = 0.0


@dataclass(frozen=True, slots=True)
class Report:
    """A running job's coalesced progress/stage change and the events that go with it."""

    job_id: uuid.UUID
    attempt: int
    progress: int | None = None
    message: str | None = None
    stage: str | None = None
    events: tuple[tuple[str, bytes], ...] = ()  # (kind, JSON data)


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: base·2^(attempt-1), capped, then scaled by 0.75–1.25
    so that jobs which failed together do not all come back together."""
    return min(cap, base * 2 ** max(0, attempt - 1)) * random.uniform(0.75, 1.25)


def json_text(value: Any, what: str) -> str:
    """Encode a payload or result as JSON text PostgreSQL's jsonb accepts."""
    try:
        text = _encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidJob(f"{what} is not JSON-serialisable: {exc}") from exc
    if b"\\u0000" in text:
        raise InvalidJob(f"{what} contains a NUL character (\\u0000), which PostgreSQL cannot store")
    return text.decode()


def _enqueue_args(jobs: Sequence[NewJob]) -> tuple[list[uuid.UUID], list[Any]]:
    ids = [uuid7() for _ in jobs]
    cols: list[list[Any]] = [[] for _ in range(8)]
    for job in jobs:
        if not -MAX_PRIORITY <= job.priority <= MAX_PRIORITY:
            raise InvalidJob(f"priority {job.priority} is out of range (-{MAX_PRIORITY} to {MAX_PRIORITY})")
        if not job.channel_id or len(job.channel_id) > 200:
            raise InvalidJob("channelId must be 1 to 200 characters")
        if job.max_attempts is not None and not 1 <= job.max_attempts <= 100:
            raise InvalidJob(f"maxAttempts {job.max_attempts} is out of range (1 to 100)")
        if job.idempotency_key is not None and not 1 <= len(job.idempotency_key) <= 200:
            raise InvalidJob("an idempotency key must be 1 to 200 characters")
        for text in (job.type, job.channel_id, job.owner_id or "", job.idempotency_key or ""):
            if "\x00" in text:
                raise InvalidJob("a NUL character (\\u0000) cannot be stored; remove it from the job's fields")
        cols[0].append(job.type)
        cols[1].append(job.channel_id)
        cols[2].append(job.owner_id)
        cols[3].append(job.priority)
        cols[4].append(json_text(job.payload, "payload"))
        cols[5].append(job.run_at)
        cols[6].append(job.max_attempts)
        cols[7].append(job.idempotency_key)
    return ids, [ids, *cols]


def _resolve_ids(
    jobs: Sequence[NewJob], ids: list[uuid.UUID], inserted: set[uuid.UUID], existing: Iterable[Any]
) -> list[uuid.UUID]:
    """Each input's job id: the new one, or the one already holding its idempotency key."""
    by_key = {(row["owner_id"], row["idempotency_key"]): row["id"] for row in existing}
    out = []
    for job, new_id in zip(jobs, ids, strict=True):
        if new_id in inserted:
            out.append(new_id)
        else:
            out.append(by_key[(job.owner_id, job.idempotency_key)])
    return out


def _missing_keys(
    jobs: Sequence[NewJob], ids: list[uuid.UUID], inserted: set[uuid.UUID]
) -> tuple[list[Any], list[Any]]:
    owners, keys = [], []
    for job, new_id in zip(jobs, ids, strict=True):
        if new_id not in inserted:
            owners.append(job.owner_id)
            keys.append(job.idempotency_key)
    return owners, keys


def _unknown_type(exc: Exception, jobs: Sequence[NewJob]) -> UnknownJobType:
    return UnknownJobType(sorted({job.type for job in jobs}))


class Queue:
    """Queue operations over an asyncpg pool (or a connection the caller owns)."""

    def __init__(self, pool: Executor, schema: str = "pgcue") -> None:
        self.pool = pool
        self.sql: Sql = sql_for(schema)

    # --- enqueue -------------------------------------------------------------------

    async def enqueue_many(self, jobs: Sequence[NewJob], *, conn: asyncpg.Connection | None = None) -> list[uuid.UUID]:
        """Enqueue many jobs in one statement; returns their ids in input order.

        A job whose (owner, idempotency key) is already taken is not inserted: its id is
        the existing job's. Pass `conn` to enqueue inside the caller's own transaction.
        """
        if not jobs:
            return []
        ids, args = _enqueue_args(jobs)
        db = conn or self.pool
        try:
            rows = await self.sql.fetch(db, "enqueue_jobs", *args)
        except asyncpg.ForeignKeyViolationError as exc:
            raise _unknown_type(exc, jobs) from exc
        inserted = {row["id"] for row in rows}
        if len(inserted) == len(jobs):
            return ids
        owners, keys = _missing_keys(jobs, ids, inserted)
        existing = await self.sql.fetch(db, "find_jobs_by_key", owners, keys)
        return _resolve_ids(jobs, ids, inserted, existing)

    async def enqueue(self, job: NewJob, *, conn: asyncpg.Connection | None = None) -> Job:
        """Enqueue one job and return it as stored (the existing job for a repeated key)."""
        (job_id,) = await self.enqueue_many([job], conn=conn)
        return await self.get(job_id, conn=conn)

    # --- read ----------------------------------------------------------------------

    async def get(self, job_id: uuid.UUID | str, *, conn: asyncpg.Connection | None = None) -> Job:
        rows = await self.get_many([job_id], conn=conn)
        if not rows:
            raise JobNotFound(job_id)
        return rows[0]

    async def get_many(
        self, job_ids: Sequence[uuid.UUID | str], *, conn: asyncpg.Connection | None = None
    ) -> list[Job]:
        rows = await self.sql.fetch(conn or self.pool, "get_jobs", [_as_uuid(i) for i in job_ids])
        return [Job.from_row(row) for row in rows]

    async def list_jobs(
        self,
        *,
        channel_id: str | None = None,
        type: str | None = None,
        state: str | None = None,
        before: tuple[datetime, uuid.UUID] | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Jobs newest first; `before` is the (created_at, id) keyset cursor of the last page."""
        created, job_id = before if before else (None, None)
        rows = await self.sql.fetch(self.pool, "list_jobs", channel_id, type, state, created, job_id, limit)
        return [Job.from_row(row) for row in rows]

    async def job_types(self) -> list[JobType]:
        rows = await self.sql.fetch(self.pool, "list_job_types")
        return [JobType(**{k: row[k] for k in JobType.__struct_fields__}) for row in rows]

    async def register_types(self, types: Sequence[JobType]) -> None:
        await self.sql.execute(self.pool, "upsert_job_types", *_type_columns(types))

    async def stats(self) -> list[asyncpg.Record]:
        return await self.sql.fetch(self.pool, "job_stats")

    # --- worker side ---------------------------------------------------------------

    async def claim(self, job_type: str, limit: int, worker_id: str, lease_seconds: float) -> list[ClaimedJob]:
        """Take up to `limit` runnable jobs of one type; each starts its next attempt."""
        rows = await self.sql.fetch(self.pool, "claim_jobs", job_type, limit, worker_id, float(lease_seconds))
        return [
            ClaimedJob(
                id=r["id"],
                type=r["type"],
                channel_id=r["channel_id"],
                owner_id=r["owner_id"],
                priority=r["priority"],
                payload=r["payload"],
                attempts=r["attempts"],
                max_attempts=r["max_attempts"],
                cancel_requested=r["cancel_requested"],
                stage=r["stage"],
                created_at=r["created_at"],
                run_at=r["run_at"],
                started_at=r["started_at"],
            )
            for r in rows
        ]

    async def heartbeat(self, worker_id: str, leases: Sequence[tuple[uuid.UUID, int, float]]) -> dict[uuid.UUID, bool]:
        """Extend the leases of the jobs a worker holds; returns {job id: cancel requested}
        for the jobs it still holds. A job missing from the answer was lost."""
        ids = [lease[0] for lease in leases]
        attempts = [lease[1] for lease in leases]
        seconds = [float(lease[2]) for lease in leases]
        rows = await self.sql.fetch(self.pool, "extend_leases", ids, attempts, seconds, worker_id)
        return {row["id"]: row["cancel_requested"] for row in rows}

    async def complete(self, items: Sequence[Completion]) -> dict[uuid.UUID, str]:
        """Record successful attempts; returns {job id: final state} for the rows that changed."""
        if not items:
            return {}
        rows = await self.sql.fetch(
            self.pool,
            "complete_jobs",
            [c.job_id for c in items],
            [c.attempt for c in items],
            [None if c.result is None else json_text(c.result, "result") for c in items],
            [c.result_path for c in items],
        )
        return {row["id"]: row["state"] for row in rows}

    async def fail(self, items: Sequence[Failure]) -> dict[uuid.UUID, str]:
        """Record failed attempts (retry with backoff, or fail); returns {job id: new state}."""
        if not items:
            return {}
        rows = await self.sql.fetch(
            self.pool,
            "fail_jobs",
            [f.job_id for f in items],
            [f.attempt for f in items],
            [_clean_text(f.error) for f in items],
            [f.kind for f in items],
            [f.retry_in for f in items],
        )
        return {row["id"]: row["state"] for row in rows}

    async def release(self, items: Sequence[tuple[uuid.UUID, int]]) -> dict[uuid.UUID, str]:
        """Give running jobs back without charging the attempt (worker shutdown)."""
        if not items:
            return {}
        rows = await self.sql.fetch(self.pool, "release_jobs", [i[0] for i in items], [i[1] for i in items])
        return {row["id"]: row["state"] for row in rows}

    async def report(self, reports: Sequence[Report]) -> set[uuid.UUID]:
        """Write coalesced progress/stage/output of running jobs; returns the ids still held."""
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
            "record_progress",
            [r.job_id for r in reports],
            [r.attempt for r in reports],
            [r.progress for r in reports],
            [r.message for r in reports],
            [r.stage for r in reports],
            ev_ids,
            ev_kinds,
            ev_data,
        )
        return {row["id"] for row in rows}

    # --- people's actions ------------------------------------------------------------

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
        """Delete a finished job and its events."""
        rows = await self.sql.fetch(self.pool, "delete_jobs", [_as_uuid(job_id)])
        if not rows:
            job = await self.get(job_id)  # raises JobNotFound
            raise InvalidTransition(job_id, job.state, "delete", "completed, failed or cancelled")

    async def clear_finished(self, channel_id: str) -> int:
        """Delete every finished job of a channel; returns how many."""
        row = await self.sql.fetchrow(self.pool, "clear_finished_jobs", channel_id)
        return int(row["deleted"]) if row else 0

    # --- maintenance -----------------------------------------------------------------

    async def rescue(self, limit: int = 1000) -> list[asyncpg.Record]:
        """Requeue (or fail) running jobs whose lease expired."""
        return await self.sql.fetch(self.pool, "rescue_jobs", limit)

    async def prune(self, retention_seconds: float, batch: int = 5000) -> int:
        """Delete jobs finished longer ago than the retention, in batches; returns how many."""
        total = 0
        while True:
            row = await self.sql.fetchrow(self.pool, "prune_jobs", float(retention_seconds), batch)
            deleted = int(row["deleted"]) if row else 0
            total += deleted
            if deleted < batch:
                return total


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


def _clean_text(text: str, limit: int = 4000) -> str:
    """Errors come from anywhere: strip NULs PostgreSQL cannot store and bound the length."""
    text = text.replace("\x00", "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    )
    return [[getattr(t, f) for t in types] for f in fields]


# --- enqueue from synchronous code (psycopg), inside the caller's transaction ----------


def enqueue_many_sync(conn: psycopg.Connection[Any], jobs: Sequence[NewJob], schema: str = "pgcue") -> list[uuid.UUID]:
    """Enqueue many jobs on a psycopg connection; joins the caller's transaction if one is open."""
    if not jobs:
        return []
    sql = sql_for(schema)
    ids, args = _enqueue_args(jobs)
    try:
        rows = sql.fetch_sync(conn, "enqueue_jobs", *args)
    except psycopg.errors.ForeignKeyViolation as exc:
        raise _unknown_type(exc, jobs) from exc
    inserted = {row["id"] for row in rows}
    if len(inserted) == len(jobs):
        return ids
    owners, keys = _missing_keys(jobs, ids, inserted)
    return _resolve_ids(jobs, ids, inserted, sql.fetch_sync(conn, "find_jobs_by_key", owners, keys))
