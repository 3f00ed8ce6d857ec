"""What the queue façade takes and gives: jobs, the jobs to enqueue, what a worker holds,
job types, schedules, outcomes, pipeline stages, callers and keys.

Python objects (snake_case, datetimes); the API's JSON shape of each is in
pgcue.core.wire, made from these by their `to_wire()`.
"""

from __future__ import annotations

import enum
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import msgspec
from asyncpg.pgproto.pgproto import UUID as PgUUID

from pgcue.core.states import FINISHED_STATES, JobState, StageState, WaitingFor
from pgcue.core.wire import JobOut, StageOut, iso_ms

PLANS = ("free", "paid")
PLAN_RANK = {"free": 0, "paid": 1}


class Job(msgspec.Struct, kw_only=True):
    """A job as stored."""

    id: uuid.UUID
    type: str
    channel_id: str
    owner_id: str | None
    state: JobState
    priority: int
    payload: Any
    run_at: datetime
    attempts: int
    max_attempts: int
    cancel_requested: bool
    result: Any
    result_path: str | None
    error_message: str | None
    errors: list[dict[str, Any]]
    progress: int
    progress_message: str | None
    stage: str | None
    locked_by: str | None
    lease_expires_at: datetime | None
    idempotency_key: str | None
    unique_key: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    parent_id: uuid.UUID | None = None
    waiting_for: str | None = None
    fence: int = 0
    artifact_bytes: int | None = None
    handler_state: dict[str, Any] | None = None  # outside work in flight (see ClaimedJob)
    parked: bool = False  # has parked since enqueued or retried: started_at covers the whole run

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def duration_ms(self) -> int | None:
        """Run time of the last attempt, start to finish (None until it finished)."""
        if self.started_at is None or self.completed_at is None:
            return None
        return int((self.completed_at - self.started_at).total_seconds() * 1000)

    @classmethod
    def from_row(cls, row: Any) -> Job:
        data = dict(row)
        data["state"] = JobState(data["state"])
        data.pop("notified", None)  # the notification count some statements return
        return cls(**data)

    def to_wire(self) -> JobOut:
        return JobOut(
            id=str(self.id),
            type=self.type,
            channel_id=self.channel_id,
            state=self.state.value,
            cancel_requested=self.cancel_requested,
            result_path=self.result_path,
            result=self.result,
            error_message=self.error_message,
            attempts=self.attempts,
            max_attempts=self.max_attempts,
            progress=self.progress,
            progress_message=self.progress_message,
            stage=self.stage,
            priority=self.priority,
            payload=self.payload,
            errors=self.errors,
            run_at=iso_ms(self.run_at) or "",
            created_at=iso_ms(self.created_at) or "",
            started_at=iso_ms(self.started_at),
            completed_at=iso_ms(self.completed_at),
            updated_at=iso_ms(self.updated_at) or "",
            duration_ms=self.duration_ms,
            parent_id=None if self.parent_id is None else str(self.parent_id),
            waiting_for=self.waiting_for if self.state == JobState.QUEUED else None,
        )


class NewJob(msgspec.Struct, kw_only=True):
    """A job to enqueue."""

    type: str
    channel_id: str
    payload: Any = msgspec.field(default_factory=dict)
    owner_id: str | None = None
    priority: int = 0
    run_at: datetime | None = None
    max_attempts: int | None = None
    idempotency_key: str | None = None
    # At most one queued-or-running job per (type, channel, unique_key); on_conflict says
    # what an enqueue that meets one does: return the existing job, replace its payload
    # (while it is still queued), or reject.
    unique_key: str | None = None
    on_conflict: Literal["return", "replace", "reject"] = "return"
    parent_id: uuid.UUID | None = None  # a pipeline run's child: its finish wakes the run


class ClaimedJob(msgspec.Struct, kw_only=True):
    """What a worker holds while it runs a job: enough to run it and fence its writes.

    `fence` is the job's claim counter as this claim set it: every write the worker makes
    about the job names it, and a claim after a rescue or a retry has a higher one, so a
    worker that lost the job changes nothing (attempts restart at 0 on a retry; fences
    never repeat)."""

    id: uuid.UUID
    type: str
    channel_id: str
    owner_id: str | None
    priority: int
    payload: Any
    attempts: int
    max_attempts: int
    fence: int
    cancel_requested: bool
    stage: str | None
    created_at: datetime
    run_at: datetime
    started_at: datetime
    # What the handler recorded about its outside work in an earlier claim (a provider's
    # prediction id), None when it has none: Queue.snooze, Queue.record_outside_work.
    handler_state: dict[str, Any] | None = None
    claimed_at: datetime | None = None  # this claim's time (started_at stays while a job polls)


class Snooze(enum.StrEnum):
    """What Queue.snooze did."""

    SNOOZED = "snoozed"  # parked until its next poll
    CANCEL = "cancel"  # its cancellation was requested: still held, not parked
    LOST = "lost"  # this worker no longer holds the job


class JobType(msgspec.Struct, kw_only=True):
    """A row of pgcue.job_types: a type's fleet-wide settings."""

    name: str
    plan: str = "free"
    concurrency: int = 1
    memory_mb: int | None = None
    lease_seconds: int = 60
    timeout_seconds: int = 3600
    max_attempts: int = 3
    description: str = ""
    global_concurrency: int | None = None
    channel_concurrency: int | None = None
    rate_limit: int | None = None
    rate_period_seconds: int = 60
    # The JSON Schema of the type's payload (None: any JSON object), checked at enqueue.
    payload_schema: dict[str, Any] | None = None


class Schedule(msgspec.Struct, kw_only=True):
    """A periodic job: `cron` (5 fields, or 6 with seconds first, UTC) enqueues `type` in
    `channel_id` with `payload` once per tick. After downtime only the next tick runs,
    unless `catch_up` asks for every missed one."""

    name: str
    cron: str
    type: str
    channel_id: str
    payload: Any = msgspec.field(default_factory=dict)
    priority: int = 0
    catch_up: bool = False


# --- a worker's writes -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Completion:
    job_id: uuid.UUID
    fence: int
    result: Any = None
    result_path: str | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    job_id: uuid.UUID
    fence: int
    error: str
    kind: str = "error"  # a FailureKind
    retry_in: float = 0.0


@dataclass(frozen=True, slots=True)
class ProgressReport:
    """A running job's coalesced progress, stage and output, and the events that go with it."""

    job_id: uuid.UUID
    fence: int
    progress: int | None = None
    message: str | None = None
    stage: str | None = None
    events: tuple[tuple[str, bytes], ...] = ()  # (kind, JSON data)


@dataclass(frozen=True, slots=True)
class Rescued:
    """A running job whose lease expired, as rescue left it."""

    id: uuid.UUID
    type: str
    state: str


class Claimed(list[ClaimedJob]):
    """Claimed jobs, and where the worker's next claim should start round the channels."""

    def __init__(self, jobs: list[ClaimedJob], next_cursor: str, ring_full: bool = False) -> None:
        super().__init__(jobs)
        self.next_cursor = next_cursor
        # The claim visited as many channels as it may: there may be more past the cursor.
        self.ring_full = ring_full


# --- pipelines --------------------------------------------------------------------------


class StageRow(msgspec.Struct, kw_only=True):
    """One stage of a pipeline run as stored."""

    job_id: uuid.UUID
    position: int
    name: str
    spec: dict[str, Any]
    state: str
    iteration: int
    feedback: list[dict[str, Any]]
    child_id: uuid.UUID | None
    review_child_id: uuid.UUID | None
    result: Any
    result_path: str | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @property
    def stage_state(self) -> StageState:
        return StageState(self.state)

    def to_wire(self) -> StageOut:
        return StageOut(
            position=self.position,
            name=self.name,
            state=self.state,
            iteration=self.iteration,
            type=str(self.spec.get("type")),
            reviewer=self.spec.get("reviewer"),
            max_iterations=int(self.spec.get("maxIterations", 1)),
            approval=bool(self.spec.get("approval")),
            feedback=[_feedback_entry(f) for f in self.feedback],
            child_id=None if self.child_id is None else str(self.child_id),
            review_child_id=None if self.review_child_id is None else str(self.review_child_id),
            result=self.result,
            result_path=self.result_path,
            started_at=iso_ms(self.started_at),
            finished_at=iso_ms(self.finished_at),
        )


def _feedback_entry(entry: Any) -> Any:
    """A feedback entry with its `at` in the API's one format (runs recorded before
    migration 0007 wrote PostgreSQL's own text, 2024-03-15T10:30:05.123456+00:00)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("at"), str) or entry["at"].endswith("Z"):
        return entry
    try:
        return {**entry, "at": iso_ms(datetime.fromisoformat(entry["at"]))}
    except ValueError:
        return entry


@dataclass(frozen=True, slots=True)
class Decision:
    """What a person's decision on a paused run changed."""

    stage: str
    stage_state: str
    iteration: int
    waiting_for: WaitingFor | None = None


# --- who may do what ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    """The user behind a request's key."""

    user_id: str
    plan: str
    admin: bool
    channels: frozenset[str]
    key_id: int = 0

    def sees(self, channel_id: str) -> bool:
        return self.admin or channel_id in self.channels

    def may_use(self, type_plan: str) -> bool:
        return self.admin or PLAN_RANK.get(self.plan, 0) >= PLAN_RANK.get(type_plan, 1)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key (its token is never stored; only its SHA-256)."""

    id: int
    user_id: str
    admin: bool
    label: str
    created_at: datetime
    revoked_at: datetime | None
    plan: str = "free"
    channels: tuple[str, ...] = field(default=())


# --- ids ------------------------------------------------------------------------------------

_UUID7_BITS = (0x7 << 76) | (0x2 << 62)  # version 7, RFC 9562 variant
_UUID7_RANDOM = ((1 << 80) - 1) & ~((0xF << 76) | (0x3 << 62))  # the 74 random bits


def uuid7_many(n: int) -> list[uuid.UUID]:
    """`n` time-ordered UUIDs (RFC 9562 version 7): new jobs land at the right edge of the
    primary-key index instead of at random pages, which keeps inserts cache-friendly.

    Built for bulk enqueues: one clock read and one urandom call for the batch, and
    asyncpg's C UUID type (a uuid.UUID, what asyncpg returns for uuid columns anyway),
    about 0.6 µs an id against 3.5 µs for uuid.UUID(int=...) one at a time."""
    millis = (time.time_ns() // 1_000_000) & 0xFFFF_FFFF_FFFF
    head = (millis << 80) | _UUID7_BITS
    rand = os.urandom(10 * n)
    from_bytes = int.from_bytes
    return [
        PgUUID((head | (from_bytes(rand[i : i + 10], "big") & _UUID7_RANDOM)).to_bytes(16, "big"))
        for i in range(0, 10 * n, 10)
    ]


# --- what operators see -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DepthRow:
    type: str
    state: str
    jobs: int
    oldest_runnable_seconds: float | None


@dataclass(frozen=True, slots=True)
class TypePolicy:
    """A type's scheduling policies, with what runs and waits against them (over the
    channels asked for)."""

    type: str
    paused: bool
    global_concurrency: int | None
    channel_concurrency: int | None
    rate_limit: int | None
    rate_period_seconds: int
    running: int
    queued: int


@dataclass(frozen=True, slots=True)
class Stats:
    depth: list[DepthRow]
    workers_recent: int | None  # None: not shown (a caller who is no admin)
    awaiting_approval: int
    policies: list[TypePolicy]
    paused_channels: list[str]

    @property
    def oldest_queued_seconds(self) -> float | None:
        ages = [d.oldest_runnable_seconds for d in self.depth if d.oldest_runnable_seconds is not None]
        return max(ages) if ages else None


# --- what the Jobs panel shows --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One event of a job's history, as the event log keeps it."""

    id: int
    kind: str
    data: Any
    created_at: datetime


@dataclass(frozen=True, slots=True)
class QueueRow:
    """A job type's queue as the operator view shows it (sql/fleet_queues.sql)."""

    type: str
    plan: str
    paused: bool
    concurrency: int  # per worker process
    global_concurrency: int | None
    channel_concurrency: int | None
    rate_limit: int | None
    rate_period_seconds: int
    runnable: int
    scheduled: int
    waiting: int  # parked: a pipeline run's stage or a person, a provider's prediction
    oldest_runnable_seconds: float | None
    running: int
    workers: int  # live worker processes serving the type
    slots: int  # their slots for the type (per-process concurrency x workers)

    @property
    def capacity(self) -> int:
        """What may run at once: the live workers' slots, within the fleet-wide limit."""
        if self.global_concurrency is None:
            return self.slots
        return min(self.slots, self.global_concurrency)


@dataclass(frozen=True, slots=True)
class Throughput:
    """Jobs of a type that finished in one minute in one final state."""

    minute: datetime
    type: str
    state: str
    jobs: int


@dataclass(frozen=True, slots=True)
class WorkerRow:
    id: str
    hostname: str
    pid: int
    types: tuple[str, ...]
    concurrency: int
    started_at: datetime
    last_seen_at: datetime
    stopped_at: datetime | None


@dataclass(frozen=True, slots=True)
class StuckJob:
    """A running job whose lease expired (the stuck_jobs view)."""

    id: uuid.UUID
    type: str
    channel_id: str
    attempt: int
    max_attempts: int
    worker: str | None
    hostname: str | None
    pid: int | None
    lease_expired_seconds: float
    worker_last_seen_seconds: float | None
    worker_stopped_at: datetime | None


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    """One failed attempt (the recent_failures view's columns)."""

    id: uuid.UUID
    type: str
    channel_id: str
    attempt: int | None
    max_attempts: int
    failed_at: datetime | None
    kind: str | None
    error: str | None
    job_state: str


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    owner_id: str
    paused: bool = False
    paused_reason: str = ""
