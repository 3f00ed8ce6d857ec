"""The API's request and response bodies (camelCase on the wire, seed 003's job shape)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from pgcue.core.models import Base, Job

Timestamp = Annotated[str, msgspec.Meta(description="ISO 8601, UTC, milliseconds: 2024-03-15T10:30:05.123Z")]


def iso_ms(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a Z, as seed 003 shows."""
    if value is None:
        return None
    if value.tzinfo is not UTC:  # asyncpg's timestamptz values are in UTC already
        value = value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"  # drop "+00:00"


class JobOut(Base):
    """A job as the API shows it."""

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

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            id=str(job.id),
            type=job.type,
            channel_id=job.channel_id,
            state=job.state.value,
            cancel_requested=job.cancel_requested,
            result_path=job.result_path,
            result=job.result,
            error_message=job.error_message,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            progress=job.progress,
            progress_message=job.progress_message,
            stage=job.stage,
            priority=job.priority,
            payload=job.payload,
            errors=job.errors,
            run_at=iso_ms(job.run_at) or "",
            created_at=iso_ms(job.created_at) or "",
            started_at=iso_ms(job.started_at),
            completed_at=iso_ms(job.completed_at),
            updated_at=iso_ms(job.updated_at) or "",
            duration_ms=job.duration_ms,
        )


class JobEnvelope(Base):
    job: JobOut


class JobPage(Base):
    jobs: list[JobOut]
    next_cursor: str | None


class JobList(Base):
    jobs: list[JobOut]


class Cleared(Base):
    channel_id: str
    deleted: int


class NewJobBody(Base, forbid_unknown_fields=True):
    """A job to enqueue. Unknown fields are refused (400)."""

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
                min_length=1, max_length=200, description="at most one queued-or-running job per (type, uniqueKey)"
            ),
        ]
        | None
    ) = None
    on_conflict: Annotated[
        Literal["return", "replace", "reject"],
        msgspec.Meta(description="when uniqueKey is taken: return that job, replace its payload, or 409"),
    ] = "return"


class StatRow(Base):
    type: str
    state: str
    jobs: int
    oldest_runnable_seconds: float | None


class TypePolicy(Base):
    """A job type's scheduling policies (registry settings; `paused` is the operator's switch)."""

    type: str
    paused: bool
    global_concurrency: int | None
    channel_concurrency: int | None
    rate_limit: int | None
    rate_period_seconds: int
    running: int
    queued: int


class Stats(Base):
    depth: list[StatRow]
    oldest_queued_seconds: float | None
    workers_recent: int
    pipelines_awaiting_approval: int = 0  # pipeline runs paused for a person (POST /api/jobs/{id}/resume)
    policies: list[TypePolicy] = msgspec.field(default_factory=list)  # fleet-wide, per type
    paused_channels: list[str] = msgspec.field(default_factory=list)  # of the caller's channels


class Health(Base):
    status: str
    detail: str | None = None
