"""Domain errors of the queue core; the API maps each to one HTTP problem."""

from __future__ import annotations


class PgcueError(Exception):
    """Base of every error pgcue raises on purpose."""


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
    def __init__(self, types: list[str] | str) -> None:
        names = ", ".join(sorted(set([types] if isinstance(types, str) else types)))
        super().__init__(f"unknown job type: {names} (see `pgcue types` or GET /api/stats for the registered types)")
        self.types = types


class InvalidJob(PgcueError):
    """A job to enqueue breaks a rule (bad channel, priority out of range, NUL in payload ...)."""


class SchemaMismatch(PgcueError):
    """The database schema is older or newer than this code knows."""


class UniqueConflict(PgcueError):
    """A unique job of the same (type, key) is already queued or running."""

    def __init__(self, job_type: str, key: str, existing: object) -> None:
        super().__init__(
            f"a {job_type} job with unique key {key!r} is already queued or running ({existing}); "
            "wait for it to finish, or enqueue with onConflict 'return' or 'replace'"
        )
        self.existing = existing
