"""The typed events a stream yields: the wire structs of pgcue.core.wire, one per event
kind, and OtherEvent for a kind (or a shape) this client does not know."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from pgcue.core.states import FINISHED_STATES, EventKind
from pgcue.core.wire import JobOutput, JobProgress, JobStatus, ProposalsUpdated, StageUpdated


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """An event of a kind this client does not know, or whose data it could not read as
    its kind: never dropped, so a stream skips nothing."""

    kind: str
    data: Any


Event = JobStatus | JobOutput | JobProgress | StageUpdated | ProposalsUpdated | OtherEvent

KINDS: dict[str, type[JobStatus | JobOutput | JobProgress | StageUpdated | ProposalsUpdated]] = {
    EventKind.JOB_STATUS: JobStatus,
    EventKind.JOB_OUTPUT: JobOutput,
    EventKind.JOB_PROGRESS: JobProgress,
    EventKind.STAGE_UPDATED: StageUpdated,
    EventKind.PROPOSALS_UPDATED: ProposalsUpdated,
}

_json = msgspec.json.Decoder()


def decode(kind: str, data: str) -> tuple[Event, Any]:
    """An event of `kind` from its `data:` text, and the data as plain JSON."""
    try:
        raw = _json.decode(data)
    except msgspec.DecodeError:
        return OtherEvent(kind, data), data
    cls = KINDS.get(kind)
    if cls is None:
        return OtherEvent(kind, raw), raw
    try:
        return msgspec.convert(raw, cls), raw
    except msgspec.ValidationError:
        return OtherEvent(kind, raw), raw


def is_terminal(event: Event) -> bool:
    """A job:status event saying the job finished (a job's stream ends after it)."""
    return isinstance(event, JobStatus) and event.state in FINISHED_STATES


@dataclass(slots=True)
class StreamState:
    """Where a stream is: the cursor to resume from, the reconnection delay the server
    asked for, the last event's data as plain JSON (with any field a handler added to
    ctx.stage() that the typed event does not name)."""

    last_event_id: str | None = None
    retry_ms: int = 1000
    last_data: Any = None
    reconnects: int = 0  # how many times the stream was opened again
