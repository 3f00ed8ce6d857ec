"""The vocabulary of the queue, in one place: job states, stage states, what a parked run
waits for, failure kinds and event kinds.

The database holds the same lists in its check constraints (jobs_state_valid,
pipeline_stages_state_valid, jobs_waiting_for_valid, job_events_kind_check);
tests/db/test_states.py fails when the two disagree. Nothing but msgspec-free stdlib here,
so the client and the wire models can import it.
"""

from __future__ import annotations

import enum


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES


FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})

# Where two products name a state differently pgcue accepts both: one product's
# `submitted` is a job not yet started, another's `succeeded` a completed one.
STATE_ALIASES = {"submitted": JobState.QUEUED, "succeeded": JobState.COMPLETED}


class StateFilter(enum.StrEnum):
    """What a list of jobs may be filtered by: a state, or one of its other names."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUBMITTED = "submitted"
    SUCCEEDED = "succeeded"


def parse_state(name: str) -> JobState:
    """A state by its name or alias; ValueError for anything else."""
    return STATE_ALIASES.get(name) or JobState(name)


class StageState(enum.StrEnum):
    """A pipeline stage's state."""

    PENDING = "pending"
    RUNNING = "running"
    IN_REVIEW = "in_review"
    AWAITING_APPROVAL = "awaiting_approval"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


STAGE_FINISHED = frozenset({StageState.DONE, StageState.FAILED, StageState.SKIPPED, StageState.CANCELLED})


class WaitingFor(enum.StrEnum):
    """What a parked job (queued, run_at in the future) waits for."""

    CHILDREN = "children"  # a pipeline run: its stage's child job
    APPROVAL = "approval"  # a pipeline run: a person's decision
    PROVIDER = "provider"  # outside work (a provider's prediction), polled at run_at


class FailureKind(enum.StrEnum):
    """Why an attempt ended without success (kept in each entry of a job's `errors`)."""

    ERROR = "error"  # the handler raised: retried while attempts remain
    PERMANENT = "permanent"  # no retry can fix it
    TIMEOUT = "timeout"  # the attempt ran past its type's timeout
    CANCELLED = "cancelled"  # stopped at a checkpoint after a cancel request
    RESCUED = "rescued"  # the worker stopped heartbeating (written by rescue_jobs.sql)


class EventKind(enum.StrEnum):
    """What the event log (and so every SSE stream) carries."""

    JOB_STATUS = "job:status"
    JOB_OUTPUT = "job:output"
    JOB_PROGRESS = "job:progress"
    STAGE_UPDATED = "stage:updated"
    # Seed 002's fourth event: a proposals job completed with a new result; the channel's
    # latest proposals changed (sql/complete_jobs.sql, from RESULT_EVENTS).
    PROPOSALS_UPDATED = "proposals:updated"


# Job types whose new results are announced on their channel, and the event that says so.
RESULT_EVENTS: dict[str, EventKind] = {"proposals": EventKind.PROPOSALS_UPDATED}
