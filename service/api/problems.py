"""RFC 9457 problem details: every error the API answers, mapped in one place.

A 500 is a bug by definition: everything a caller can send is answered with a 4xx that
says what to fix and, where there is one, names the field (`field`: payload.text, runAt,
cursor). A database that cannot serve us is a 503 with Retry-After.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import unquote

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from pgcue.core import db
from pgcue.core.errors import InvalidJob, InvalidTransition, JobNotFound, PgcueError, UniqueConflict, UnknownJobType
from pgcue.core.wire import Problem

log = structlog.get_logger("pgcue.api")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://pgcue.dev/problems/"


class ApiProblem(Exception):
    """Raised by routes: an answer other than success."""

    def __init__(self, status: int, kind: str, title: str, detail: str, *, field: str | None = None, **extra: Any):
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.field = field
        self.extra = extra
        self.headers: dict[str, str] = {}


def unauthenticated(detail: str) -> ApiProblem:
    p = ApiProblem(401, "unauthenticated", "Unauthenticated", detail)
    p.headers["WWW-Authenticate"] = 'Bearer realm="pgcue"'
    return p


def not_found(detail: str) -> ApiProblem:
    return ApiProblem(404, "not-found", "Not found", detail)


def not_a_job_id(text: str) -> ApiProblem:
    return not_found(f"{text[:60]!r} is not a job id (job ids are UUIDs such as 0190b2c4-…)")


def too_many(detail: str, retry_after: int = 5) -> ApiProblem:
    p = ApiProblem(429, "too-many-requests", "Too many requests", detail)
    p.headers["Retry-After"] = str(retry_after)
    return p


def forbidden_plan(job_type: str, plan: str, needed: str) -> ApiProblem:
    return ApiProblem(
        403,
        "plan-required",
        "Plan does not include this job type",
        f"job type {job_type!r} needs the {needed} plan; this key's user is on the {plan} plan "
        f"(upgrade to {needed}, or use a type your plan includes)",
        field="type",
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
        field=p.field,
        required_plan=p.extra.get("requiredPlan"),
        errors=p.extra.get("errors"),
    )
    return Response(body, status_code=p.status, media_type=PROBLEM_JSON, headers=p.headers or None)


def _on_problem(_: Request[Any, Any, Any], exc: ApiProblem) -> Response[Any]:
    return _response(exc)


def _field_of(key: str) -> str:
    """Litestar's error key for a body field (`runAt`, `payload.text`) as the API names it."""
    return key.removeprefix("$.")


def _wire_name(request: Request[Any, Any, Any], key: str) -> str:
    """A parameter's name as the caller sends it (state, Idempotency-Key, Last-Event-ID),
    where Litestar reports the handler's argument (job_state, idempotency_key)."""
    try:
        param = request.route_handler.parsed_fn_signature.parameters.get(key)
    except Exception:  # no route (an error before routing): nothing to rename
        return key
    kwarg = getattr(param, "kwarg_definition", None)
    return getattr(kwarg, "query", None) or getattr(kwarg, "header", None) or key


def _on_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    extra = exc.extra if isinstance(exc.extra, list) else None
    errors = [{k: str(v) for k, v in e.items()} for e in extra if isinstance(e, dict)] if extra else None
    for e in errors or []:
        if e.get("key") == "data":  # Litestar's argument for the body: the body as a whole, no field
            del e["key"]
            if e.get("message") == "'data'":  # how Litestar says that no body came
                e["message"] = "the request has no body; send a JSON object"
        elif "key" in e:
            e["key"] = _wire_name(request, e["key"])
    # Name the field in the message: "onConflict: Invalid enum value 'maybe'".
    text = " ".join(
        f"{e['key']}: {e.get('message', '')}" if e.get("key") else str(e.get("message", "")) for e in errors or []
    ) or str(exc.detail)
    field = next((_field_of(e["key"]) for e in errors or [] if e.get("key")), None)
    if field is None and "at `$." in text:
        field = text.rsplit("at `$.", 1)[1].split("`", 1)[0]
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
    return _response(bad_request(kind, title, detail, field=field, errors=errors))


_HTTP_KINDS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Unauthenticated"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("body-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def _unroutable_job_id(request: Request[Any, Any, Any]) -> str | None:
    """The id of a request to a job route that routing could not match, when it is not a
    UUID: an id holding an encoded slash (the server decodes %2F into more segments), or
    `recent` under DELETE (the path belongs to GET /api/jobs/recent). None otherwise."""
    raw = request.scope.get("raw_path")  # as sent, still percent-encoded (optional in ASGI)
    path = raw.decode("latin-1") if raw else request.scope.get("path", "")
    for route in request.app.routes:
        if "{job_id:str}" not in route.path or request.method not in getattr(route, "methods", ()):
            continue
        prefix, _, suffix = route.path.partition("{job_id:str}")
        segment = path.removeprefix(prefix).removesuffix(suffix) if path.endswith(suffix) else ""
        if path.startswith(prefix) and segment and "/" not in segment:
            text = unquote(segment, errors="replace")
            try:
                uuid.UUID(text)
            except ValueError:
                return text
    return None


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code in (404, 405) and (bad_id := _unroutable_job_id(request)) is not None:
        return _response(not_a_job_id(bad_id))
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


def _on_domain(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    field = getattr(exc, "field", None)
    if isinstance(exc, JobNotFound):
        return _response(not_found(f"job {exc.job_id} not found"))
    if isinstance(exc, InvalidTransition):
        return _response(ApiProblem(409, "invalid-transition", "Invalid state transition", str(exc)))
    if isinstance(exc, UniqueConflict):
        return _response(
            ApiProblem(409, "unique-conflict", "A unique job is already queued or running", str(exc), field=field)
        )
    if isinstance(exc, UnknownJobType):
        return _response(ApiProblem(422, "unknown-job-type", "Unknown job type", str(exc), field=field))
    if isinstance(exc, InvalidJob):
        return _response(
            ApiProblem(422, "invalid-job", "Invalid job", f"{exc} (fix the field and send again)", field=field)
        )
    if isinstance(exc, PgcueError):
        return _response(ApiProblem(422, "invalid-request", "Invalid request", str(exc), field=field))
    return _on_unexpected(request, exc)


def _database_down(exc: BaseException) -> Response[Any]:
    log.warning("database unavailable", error=db.describe(exc))
    p = ApiProblem(503, "database-unavailable", "Database unavailable", "the database cannot be reached; retry shortly")
    p.headers["Retry-After"] = "1"
    return _response(p)


def _decoding_body(exc: BaseException) -> bool:
    """Whether `exc` was raised while Litestar decoded the request body (msgspec raises a
    UnicodeDecodeError for invalid UTF-8 inside a string and a RecursionError for JSON
    nested too deep, neither of which Litestar's decoder turns into a 400)."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name in ("decode_json", "decode_msgpack"):
            return True
        tb = tb.tb_next
    return False


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if db.unavailable(exc) or db.fatal(exc):
        return _database_down(exc)
    if isinstance(exc, UnicodeDecodeError | RecursionError) and _decoding_body(exc):
        why = "is not valid UTF-8" if isinstance(exc, UnicodeDecodeError) else "is nested too deeply"
        return _response(
            bad_request("bad-json", "Body is not valid JSON", f"the request body {why}; send one JSON object")
        )
    if db.bad_value(exc):
        # A value the checks let through and PostgreSQL refused: still the caller's input.
        return _response(
            ApiProblem(422, "invalid-value", "Invalid value", f"a value cannot be stored: {db.describe(exc)}")
        )
    log.exception("unhandled error", error=str(exc), path=request.scope.get("path"))
    return _response(ApiProblem(500, "internal", "Internal error", "an unexpected error occurred; it has been logged"))


exception_handlers: dict[Any, Any] = {
    ApiProblem: _on_problem,
    ValidationException: _on_validation,
    HTTPException: _on_http,
    PgcueError: _on_domain,
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
        429: "Too many streams open with this key (Retry-After says when to try again)",
        503: "The database cannot be reached",
    }
    out = {}
    for code in (*codes, 401, 503):
        out[code] = spec(code, overrides.get(f"d{code}", text[code]))
    return out


__all__ = ["PROBLEM_JSON", "ApiProblem", "Problem", "exception_handlers", "msgspec"]
