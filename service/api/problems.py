"""RFC 9457 problem details: every error the API answers, mapped in one place."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from pgcue.core.errors import InvalidJob, InvalidTransition, JobNotFound, UniqueConflict, UnknownJobType

log = structlog.get_logger("pgcue.api")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://pgcue.dev/problems/"


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """An RFC 9457 problem: `detail` says what to fix."""

    type: str
    title: str
    status: int
    detail: str
    required_plan: str | None = None
    errors: list[dict[str, Any]] | None = None


class ApiProblem(Exception):
    """Raised by routes: an answer other than success."""

    def __init__(self, status: int, kind: str, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {}


def unauthenticated(detail: str) -> ApiProblem:
    p = ApiProblem(401, "unauthenticated", "Unauthenticated", detail)
    p.headers["WWW-Authenticate"] = 'Bearer realm="pgcue"'
    return p


def not_found(detail: str) -> ApiProblem:
    return ApiProblem(404, "not-found", "Not found", detail)


def forbidden_plan(job_type: str, plan: str, needed: str) -> ApiProblem:
    return ApiProblem(
        403,
        "plan-required",
        "Plan does not include this job type",
        f"job type {job_type!r} needs the {needed} plan; this key's user is on the {plan} plan "
        f"(upgrade to {needed}, or use a type your plan includes)",
        requiredPlan=needed,
    )


def bad_request(kind: str, title: str, detail: str, **extra: Any) -> ApiProblem:
    return ApiProblem(400, kind, title, detail, **extra)


def _response(p: ApiProblem) -> Response[Any]:
    body = Problem(
        type=TYPE_BASE + p.kind,
        title=p.title,
        status=p.status,
        detail=p.detail,
        required_plan=p.extra.get("requiredPlan"),
        errors=p.extra.get("errors"),
    )
    return Response(body, status_code=p.status, media_type=PROBLEM_JSON, headers=p.headers or None)


def _on_problem(_: Request[Any, Any, Any], exc: ApiProblem) -> Response[Any]:
    return _response(exc)


def _on_validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    extra = exc.extra if isinstance(exc.extra, list) else None
    errors = [{k: str(v) for k, v in e.items()} for e in extra if isinstance(e, dict)] if extra else None
    # Name the field in the message: "onConflict: Invalid enum value 'maybe'".
    text = " ".join(
        f"{e['key']}: {e.get('message', '')}" if e.get("key") else str(e.get("message", "")) for e in errors or []
    ) or str(exc.detail)
    lowered = text.lower()
    if "json is malformed" in lowered or "malformed" in lowered or ("decode" in lowered and "json" in lowered):
        kind, title = "bad-json", "Body is not valid JSON"
        detail = f"the request body is not valid JSON: {text} (send a JSON object with Content-Type: application/json)"
    elif "unknown field" in lowered or "object contains unknown field" in lowered:
        kind, title = "unknown-field", "Unknown field"
        detail = f"{text} (see /schema for the fields this route accepts)"
    else:
        kind, title = "invalid-request", "Invalid request"
        detail = f"{text} (see /schema for the expected fields, types and ranges)"
    p = bad_request(kind, title, detail, errors=errors)
    return _response(p)


_HTTP_KINDS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Unauthenticated"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("body-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def _on_http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    kind, title = _HTTP_KINDS.get(exc.status_code, ("http-error", "HTTP error"))
    detail = str(exc.detail)
    if exc.status_code == 404:
        detail = f"{detail}: no such route (see /schema for the API's routes)"
    elif exc.status_code == 405:
        detail = f"{detail} (see /schema for the methods of this route)"
    elif exc.status_code == 413:
        detail = f"{detail}: send a smaller body (at most 1 MiB; store large inputs elsewhere and pass a reference)"
    if exc.status_code == 400 and any(w in detail for w in ("malformed", "truncated", "JSON", "invalid character")):
        kind, title = "bad-json", "Body is not valid JSON"
        detail = f"the request body is not valid JSON ({detail}); send one JSON object"
    p = ApiProblem(exc.status_code, kind, title, detail)
    if exc.headers:
        p.headers.update(exc.headers)
    return _response(p)


def _on_domain(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, JobNotFound):
        return _response(not_found(f"job {exc.job_id} not found"))
    if isinstance(exc, InvalidTransition):
        return _response(ApiProblem(409, "invalid-transition", "Invalid state transition", str(exc)))
    if isinstance(exc, UniqueConflict):
        return _response(ApiProblem(409, "unique-conflict", "A unique job is already queued or running", str(exc)))
    if isinstance(exc, UnknownJobType):
        return _response(ApiProblem(422, "unknown-job-type", "Unknown job type", str(exc)))
    if isinstance(exc, InvalidJob):
        return _response(ApiProblem(422, "invalid-job", "Invalid job", f"{exc} (fix the field and send again)"))
    return _on_unexpected(_, exc)


def _on_database_down(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.warning("database unavailable", error=str(exc))
    p = ApiProblem(503, "database-unavailable", "Database unavailable", "the database cannot be reached; retry shortly")
    p.headers["Retry-After"] = "1"
    return _response(p)


def _on_unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # InternalClientError: the server ended the connection (pg_terminate_backend, a restart)
    # while asyncpg was between operations; its protocol state is broken, the statement
    # never ran, and a retry on a fresh connection works (tests/test_faults_api.py).
    lost = OSError | asyncpg.InterfaceError | asyncpg.PostgresConnectionError | asyncpg.InternalClientError
    if isinstance(exc, lost):
        return _on_database_down(_, exc)
    if isinstance(exc, asyncpg.PostgresError) and getattr(exc, "sqlstate", "").startswith(
        ("08", "57P", "53", "3D", "28")
    ):
        return _on_database_down(_, exc)
    log.exception("unhandled error", error=str(exc))
    return _response(ApiProblem(500, "internal", "Internal error", "an unexpected error occurred; it has been logged"))


exception_handlers: dict[Any, Any] = {
    ApiProblem: _on_problem,
    ValidationException: _on_validation,
    HTTPException: _on_http,
    JobNotFound: _on_domain,
    InvalidTransition: _on_domain,
    UnknownJobType: _on_domain,
    InvalidJob: _on_domain,
    UniqueConflict: _on_domain,
    Exception: _on_unexpected,
}


def spec(status: int, description: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=Problem, description=description, media_type=PROBLEM_JSON, generate_examples=False
    )


def responses(*codes: int, **overrides: str) -> dict[int, ResponseSpec]:
    """The documented problem responses of a route."""
    text = {
        400: "Bad JSON, unknown or wrongly typed fields, or an out-of-range parameter",
        401: "Missing or unknown API key (send Authorization: Bearer <key>)",
        403: "The caller's plan does not include the job type (the problem names the plan needed)",
        404: "No such job or channel among the caller's",
        409: "The job's state does not allow this action",
        413: "Request body too large",
        422: "Unknown job type, or a field out of range",
        503: "The database cannot be reached",
    }
    out = {}
    for code in (*codes, 401, 503):
        out[code] = spec(code, overrides.get(f"d{code}", text[code]))
    return out
