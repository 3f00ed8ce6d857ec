"""What the client raises: the API's problems (RFC 9457 problem+json) as exceptions, the
transport's failures, and the outcomes of `wait()` that are not a completed job.

    ClientError
    ├── ApiError                 an answer other than success: status, title, detail, field
    │   ├── BadRequest           400  bad JSON, unknown or wrongly typed field, bad cursor
    │   ├── Unauthorized         401  missing, unknown or revoked key
    │   ├── Forbidden            403  the plan does not include the type (required_plan)
    │   ├── NotFound             404  no such job or channel among the caller's
    │   ├── Conflict             409  the job's state does not allow it; unique key taken
    │   ├── PayloadTooLarge      413
    │   ├── RangeNotSatisfiable  416  an artifact byte range outside the file
    │   ├── Unprocessable        422  unknown type, payload refused by the type's schema
    │   ├── TooManyRequests      429  too many streams for this key (retry_after)
    │   └── ServerError          5xx
    │       └── ServiceUnavailable 503  the database cannot be reached (retry_after)
    ├── TransportError           the API could not be reached, or the connection broke
    │   └── RequestTimeout       no answer within the call's timeout
    ├── ResponseError            a success that is not what the API sends (a proxy's page)
    ├── EnqueueManyFailed        some jobs of enqueue_many() were refused (created, errors)
    ├── JobError                 wait(): the job ended, or stopped, without completing
    │   ├── JobFailed            message, attempts, errors
    │   ├── JobCancelled
    │   └── AwaitingApproval     a pipeline run paused for a person (stage)
    └── WaitTimeout              wait(): still unfinished at the timeout (also a TimeoutError)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from pgcue.core.wire import JobOut, Problem


class ClientError(Exception):
    """Everything pgcue.client raises on purpose."""


class ApiError(ClientError):
    """The API answered with an error (its problem+json body, when it sent one)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        field: str | None = None,
        type: str | None = None,
        problem: Problem | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.type = type
        self.problem = problem
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.status} {self.title}: {self.detail}"
        return f"{text} (field: {self.field})" if self.field else text

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked to wait before trying again (Retry-After), if it did."""
        return retry_after(self.headers)


class BadRequest(ApiError):
    """400: bad JSON, an unknown or wrongly typed field, a bad cursor or Last-Event-ID."""


class Unauthorized(ApiError):
    """401: no key, an unknown key, or a revoked one."""


class Forbidden(ApiError):
    """403: the key's plan does not include the job type."""

    @property
    def required_plan(self) -> str | None:
        return self.problem.required_plan if self.problem else None


class NotFound(ApiError):
    """404: no such job or channel among the caller's (another tenant's job is 404 too)."""


class Conflict(ApiError):
    """409: the job's state does not allow the action, a unique key is taken, or an
    Idempotency-Key was used for a different job."""


class PayloadTooLarge(ApiError):
    """413: the body is over the server's limit (1 MiB by default)."""


class RangeNotSatisfiable(ApiError):
    """416: the byte range asked of an artifact is outside the file."""


class Unprocessable(ApiError):
    """422: an unknown job type, or a payload or field the type refuses."""


class TooManyRequests(ApiError):
    """429: this key has too many streams open."""


class ServerError(ApiError):
    """5xx: the server failed."""


class ServiceUnavailable(ServerError):
    """503: the database cannot be reached; the call may be tried again shortly."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    416: RangeNotSatisfiable,
    422: Unprocessable,
    429: TooManyRequests,
    503: ServiceUnavailable,
}


class TransportError(ClientError):
    """The API could not be reached, or the connection broke before an answer (after the
    retries the call allows). `__cause__` is httpx's exception."""


class RequestTimeout(TransportError):
    """No answer within the call's timeout."""


class ResponseError(ClientError):
    """A success status whose body is not what the API sends (a proxy's page, say)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class EnqueueManyFailed(ClientError):
    """Some jobs of an enqueue_many() were refused; the others were made.

    `created` and `errors` are keyed by the job's position in the list given."""

    def __init__(self, created: dict[int, JobOut], errors: dict[int, ClientError]) -> None:
        self.created = created
        self.errors = errors
        first = min(errors)
        super().__init__(f"{len(errors)} of {len(created) + len(errors)} jobs refused; job {first}: {errors[first]}")


class JobError(ClientError):
    """wait(): the job ended, or stopped, without completing. `job` is how it was then."""

    def __init__(self, job: JobOut, message: str) -> None:
        self.job = job
        super().__init__(message)


class JobFailed(JobError):
    """The job failed: `message` is its error (the last attempt's), `attempts` how many ran."""

    def __init__(self, job: JobOut) -> None:
        self.message = job.error_message or "failed"
        self.attempts = job.attempts
        self.errors: list[dict[str, Any]] = list(job.errors)
        super().__init__(job, f"job {job.id} failed after {job.attempts} attempt(s): {self.message}")


class JobCancelled(JobError):
    """The job was cancelled (by a person, or with its pipeline)."""

    def __init__(self, job: JobOut) -> None:
        super().__init__(job, f"job {job.id} was cancelled: {job.error_message or 'cancelled'}")


class AwaitingApproval(JobError):
    """A pipeline run paused for a person's decision (approve() or reject()); it will not
    go on by itself. `stage` names the stage that waits."""

    def __init__(self, job: JobOut) -> None:
        self.stage = job.stage
        where = f" at stage {job.stage!r}" if job.stage else ""
        super().__init__(job, f"job {job.id} waits for a person's approval{where}")


class WaitTimeout(ClientError, TimeoutError):
    """wait(): the job was not finished when the timeout came. `job` is how it was last seen."""

    def __init__(self, job: JobOut, timeout: float) -> None:
        self.job = job
        self.timeout = timeout
        super().__init__(f"job {job.id} still {job.state} after {timeout:g} s")


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds (the delta form; pgcue sends no dates)."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def api_error(status: int, reason: str, headers: Mapping[str, str], body: bytes) -> ApiError:
    """The exception for an error answer: its problem+json when it has one, else its text."""
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    problem: Problem | None = None
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if "json" in content_type:
        try:
            problem = msgspec.json.decode(body, type=Problem)
        except (msgspec.DecodeError, msgspec.ValidationError):
            problem = None
    if problem is not None:
        return cls(
            status,
            problem.title,
            problem.detail,
            field=problem.field,
            type=problem.type,
            problem=problem,
            headers=headers,
        )
    text = body.decode("utf-8", "replace").strip()[:500] or reason
    return cls(status, reason or "HTTP error", text, headers=headers)
