"""Domain errors of the queue core; the API maps each to one HTTP problem (pgcue.api.problems)."""

from __future__ import annotations


class PgcueError(Exception):
    """Base of every error pgcue raises on purpose. `field`, when set, names the input at
    fault in the API's terms (`payload.text`, `runAt`, `channelId`)."""

    field: str | None = None


class JobNotFound(PgcueError):
    def __init__(self, job_id: object) -> None:
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class InvalidTransition(PgcueError):
    """The job's state does not allow the action (cancel a completed job, retry a queued one)."""

    def __init__(self, job_id: object, state: str, action: str, allowed: str) -> None:
        super().__init__(
            f"cannot {action} job {job_id}: it is {state}; only {allowed} jobs can be {action_past(action)}"
        )
        self.job_id = job_id
        self.state = state
        self.action = action


def action_past(action: str) -> str:
    return {"cancel": "cancelled", "retry": "retried", "delete": "deleted", "resume": "resumed"}.get(
        action, action + "ed"
    )


class UnknownJobType(PgcueError):
    field = "type"

    def __init__(self, types: list[str] | str) -> None:
        names = ", ".join(sorted(set([types] if isinstance(types, str) else types)))
        super().__init__(f"unknown job type: {names} (see `pgcue types` or GET /api/stats for the registered types)")
        self.types = types


class InvalidJob(PgcueError):
    """A job to enqueue breaks a rule (bad channel, priority out of range, a payload its type
    refuses, a NUL character ...)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SchemaMismatch(PgcueError):
    """The database schema is older or newer than this code knows, or an applied migration
    was edited after it was applied."""


class UniqueConflict(PgcueError):
    """A unique job of the same (type, channel, key) is already queued or running."""

    field = "uniqueKey"

    def __init__(self, job_type: str, key: str, existing: object) -> None:
        super().__init__(
            f"a {job_type} job with unique key {key!r} is already queued or running in this channel ({existing}); "
            "wait for it to finish, or enqueue with onConflict 'return' or 'replace'"
        )
        self.existing = existing


class AuthError(PgcueError):
    """An API key cannot be created, rotated or revoked as asked."""


class QuotaExceeded(PgcueError):
    """A channel's artifacts would grow past its quota (PGCUE_ARTIFACT_QUOTA_BYTES)."""
