"""The wire format: what the API answers and the client reads, defined once.

camelCase JSON (msgspec `rename="camel"`); timestamps are ISO 8601 in UTC with
milliseconds and a Z (`iso_ms`), the one format pgcue writes anywhere a person or a
program reads a time. Only msgspec and the standard library here: the Python client
imports this module without the server's dependencies.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

Timestamp = Annotated[str, msgspec.Meta(description="ISO 8601, UTC, milliseconds: 2024-03-15T10:30:05.123Z")]


def iso_ms(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a Z: 2024-03-15T10:30:05.123Z."""
    if value is None:
        return None
    if value.tzinfo is not UTC:  # asyncpg's timestamptz values are in UTC already
        value = value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"  # drop "+00:00"


class Wire(msgspec.Struct, rename="camel", kw_only=True):
    """Base of every wire struct: snake_case in Python, camelCase in JSON."""


class JobOut(Wire):
    """A job as the API shows it (GET /api/jobs/{id} answers {"job": JobOut})."""

    id: str
    type: str
    channel_id: str
    state: str
    cancel_requested: bool
    result_path: str | None
    result: Any
    error_message: str | None
    attempts: int
    max_attempts: int
    progress: int
    progress_message: str | None
    stage: str | None
    priority: int
    payload: Any
    errors: list[dict[str, Any]]
    run_at: Timestamp
    created_at: Timestamp
    started_at: Timestamp | None
    completed_at: Timestamp | None
    updated_at: Timestamp
    duration_ms: int | None
    parent_id: str | None = None  # the pipeline run this job works for
    waiting_for: str | None = None  # a parked job: "children" or "approval" (a pipeline run), "provider"


class JobEnvelope(Wire):
    job: JobOut


class JobPage(Wire):
    jobs: list[JobOut]
    next_cursor: str | None


class JobList(Wire):
    jobs: list[JobOut]


class Cleared(Wire):
    channel_id: str
    deleted: int


class NewJobBody(Wire, forbid_unknown_fields=True):
    """A job to enqueue (POST /api/jobs). Unknown fields are refused (400)."""

    type: Annotated[str, msgspec.Meta(min_length=1, max_length=63, description="a registered job type")]
    channel_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="one of your channels")]
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    priority: Annotated[int, msgspec.Meta(ge=-1000, le=1000)] = 0
    run_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    unique_key: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=200,
                description="at most one queued-or-running job per (type, channel, uniqueKey)",
            ),
        ]
        | None
    ) = None
    on_conflict: Annotated[
        Literal["return", "replace", "reject"],
        msgspec.Meta(description="when uniqueKey is taken: return that job, replace its payload, or 409"),
    ] = "return"


class ResumeBody(Wire, forbid_unknown_fields=True):
    """A person's decision on the stage a paused pipeline run waits on."""

    decision: Literal["approve", "reject"]
    feedback: Annotated[str, msgspec.Meta(max_length=4000)] | None = None


StateName = Literal["queued", "running", "completed", "failed", "cancelled", "submitted", "succeeded"]


class BulkBody(Wire, forbid_unknown_fields=True):
    """An action on every job of a channel a filter matches (POST /api/jobs/bulk), not just
    a page of them. `dryRun` counts them (for a confirmation that says how many); the
    action itself goes through at most `limit` of them per call, newest first, and
    `nextCursor` continues where it stopped. Pass the dry run's `asOf` as `createdBefore`
    so that jobs enqueued since the confirmation are left alone."""

    action: Annotated[
        Literal["retry", "cancel", "delete"],
        msgspec.Meta(description="retry failed or cancelled jobs, cancel queued or running ones, delete finished ones"),
    ]
    channel_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="one of your channels")]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=63)] | None = None
    state: Annotated[StateName, msgspec.Meta(description="one of the states the action applies to")] | None = None
    created_after: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    created_before: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    include_children: bool = False  # a pipeline run's stage jobs too (they go with their run otherwise)
    dry_run: bool = False
    cursor: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 5_000


class BulkResult(Wire):
    action: str
    matched: int  # jobs that matched (a dry run: counted, up to 100,000 per state; else: gone through)
    changed: int  # jobs the action applied to (0 in a dry run)
    capped: bool  # the count stopped at its cap: at least `matched`
    next_cursor: str | None  # more may match past it: send it as `cursor` to go on
    as_of: Timestamp  # when it was counted or done (send a dry run's as createdBefore)


class Paused(Wire):
    """A job type's or a channel's pause switch, as it now stands."""

    paused: bool
    type: str | None = None
    channel_id: str | None = None


class StatRow(Wire):
    type: str
    state: str
    jobs: int
    oldest_runnable_seconds: float | None


class TypePolicyOut(Wire):
    """A job type's scheduling policies (registry settings; `paused` is the operator's switch),
    with what runs and waits against them in the caller's channels."""

    type: str
    paused: bool
    global_concurrency: int | None
    channel_concurrency: int | None
    rate_limit: int | None
    rate_period_seconds: int
    running: int
    queued: int


class Stats(Wire):
    depth: list[StatRow]
    oldest_queued_seconds: float | None
    workers_recent: int | None  # the fleet's workers seen in the last minute (admin keys only)
    pipelines_awaiting_approval: int = 0  # pipeline runs paused for a person (POST /api/jobs/{id}/resume)
    policies: list[TypePolicyOut] = msgspec.field(default_factory=list)
    paused_channels: list[str] = msgspec.field(default_factory=list)  # of the caller's channels


class Health(Wire):
    status: str
    detail: str | None = None


class StageOut(Wire):
    """One stage of a pipeline run."""

    position: int
    name: str
    state: str
    iteration: int
    type: str
    reviewer: str | None
    max_iterations: int
    approval: bool
    feedback: list[dict[str, Any]]
    child_id: str | None
    review_child_id: str | None
    result: Any
    result_path: str | None
    started_at: Timestamp | None
    finished_at: Timestamp | None


class StagesOut(Wire):
    job: JobOut
    waiting_for: str | None
    stages: list[StageOut]


class EventOut(Wire):
    """What every live event's `data:` holds (GET /api/jobs/{id}/events, GET /api/events);
    the SSE `event:` line names its kind (pgcue.core.states.EventKind) and its `id:` is the
    cursor to resume from (Last-Event-ID). Fields of a later server are ignored."""

    event_id: int
    job_id: str
    channel_id: str
    created_at: Timestamp


class JobStatus(EventOut):
    """`job:status`: the job changed state (a retry scheduled, a cancel asked, a run parked)."""

    state: str  # a JobState
    attempt: int
    max_attempts: int | None = None
    error_message: str | None = None
    result_path: str | None = None
    cancel_requested: bool | None = None
    waiting_for: str | None = None  # a parked pipeline run: "children" or "approval" (WaitingFor)
    retry_at: Timestamp | None = None  # a failed attempt that will run again then
    reason: str | None = None  # "retried", "rescued", "worker shutdown"


class JobOutput(EventOut):
    """`job:output`: text the handler streamed (ctx.output), in chunks of at most 4,000 characters."""

    text: str


class JobProgress(EventOut):
    """`job:progress`: percent done, 0-100 (ctx.progress), with its message."""

    progress: int
    message: str | None = None


class StageUpdated(EventOut):
    """`stage:updated`: a stage a handler entered (ctx.stage: `stage` and the handler's own
    fields) or a pipeline stage's change (position, state, iteration, ...)."""

    stage: str
    position: int | None = None
    state: str | None = None  # a StageState, for pipeline stages
    iteration: int | None = None
    child_id: str | None = None
    feedback: str | None = None
    passed: bool | None = None
    decision: str | None = None  # a person's "approve" or "reject"
    reason: str | None = None


class ProposalsUpdated(EventOut):
    """`proposals:updated` (seed 002): a proposals job (`jobId`) completed with new
    proposals, so its channel's latest proposals changed; read them from the job's result."""

    type: str
    result_path: str | None = None


class Shutdown(Wire):
    """`shutdown`: the server is stopping; reconnect after `retryMs` with the frame's `id:`."""

    reason: str
    retry_ms: int = 1000


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """An RFC 9457 problem (application/problem+json): `detail` says what to fix and
    `field`, when there is one, names the input at fault (`payload.text`, `runAt`, `cursor`)."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    required_plan: str | None = None
    errors: list[dict[str, Any]] | None = None
