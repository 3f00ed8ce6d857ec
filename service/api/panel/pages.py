"""How the panel answers: HTML pages and fragments with the headers a page of this origin
needs (a CSP that allows this origin's own scripts and styles and nothing inline, no
framing, no caching of per-user pages), the CSRF token of the session in each page, and
errors as pages (fragments, which panel.js fetches, answer problem+json like the API).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

from pgcue.api.auth import csrf_token
from pgcue.api.panel.render import asset_versions, environment
from pgcue.api.panel.snapshot import Snapshots
from pgcue.api.problems import ApiProblem, exception_handlers
from pgcue.core.config import Settings
from pgcue.core.errors import PgcueError
from pgcue.core.queue import Queue

HTML = "text/html"  # Litestar adds the charset
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class PanelState:
    """What the panel keeps per API process (app.state.panel)."""

    def __init__(self, queue: Queue, settings: Settings) -> None:
        self.queue = queue
        self.settings = settings
        self.env = environment()
        self.assets = asset_versions()
        self.snapshots = Snapshots(queue)


def panel_problem(status: int, detail: str, *, field: str | None = None) -> ApiProblem:
    titles = {400: "Bad request", 403: "Forbidden", 404: "Not found", 409: "Conflict"}
    kinds = {400: "invalid-request", 403: "forbidden", 404: "not-found", 409: "invalid-transition"}
    return ApiProblem(status, kinds.get(status, "error"), titles.get(status, "Error"), detail, field=field)


def render(request: Request[Any, Any, Any], template: str, **context: Any) -> str:
    panel: PanelState = request.app.state.panel
    state = request.scope.get("state", {})
    session = state.get("session")
    caller = state.get("caller")
    context.setdefault("fragment", False)
    return panel.env.get_template(template).render(
        caller=caller,
        csrf=csrf_token(session) if session else "",
        assets=panel.assets,
        **context,
    )


def page(request: Request[Any, Any, Any], template: str, *, status: int = 200, **context: Any) -> Response[str]:
    return Response(render(request, template, **context), status_code=status, media_type=HTML, headers=SECURITY_HEADERS)


def not_found_page(request: Request[Any, Any, Any]) -> Response[str]:
    """The one page for a job that is missing and a job that is another user's: the same
    bytes, so nothing tells them apart."""
    return page(
        request,
        "error.html",
        status=404,
        title="Not found",
        heading="Job not found",
        detail="No such job among your channels' jobs. It may have been deleted or cleared.",
    )


def _problem_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The API's own answer to `exc` (problem+json), from its exception handlers."""
    for cls in type(exc).__mro__:
        handler = exception_handlers.get(cls)
        if handler is not None:
            response: Response[Any] = handler(request, exc)
            return response
    response = exception_handlers[Exception](request, exc)
    return response


def on_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Errors of panel routes: a browser asking for a page gets a page saying what went
    wrong, with the status; fragments, programs and anything but a GET get the API's
    problem+json."""
    answer = _problem_response(request, exc)
    wants_page = "text/html" in (request.headers.get("accept") or "") and request.method == "GET"
    if request.scope["path"].startswith("/ui/fragments/") or not wants_page or answer.status_code == 401:
        return answer  # panel.js, a program, or the sign-in check (a browser was sent to sign in)
    content = answer.content
    problem = msgspec.to_builtins(content) if isinstance(content, msgspec.Struct) else {}
    return page(
        request,
        "error.html",
        status=answer.status_code or 500,
        title=str(problem.get("title") or "Error"),
        heading=str(problem.get("title") or "Something went wrong"),
        detail=str(problem.get("detail") or "The request could not be answered."),
    )


PAGE_EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiProblem: on_error,
    HTTPException: on_error,
    PgcueError: on_error,
    Exception: on_error,
}
