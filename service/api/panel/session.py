"""Signing in to the panel and out of it.

GET /ui/login shows a form for an API key (and sets a one-off cookie whose value the form
repeats, so that a form posted from another site, which cannot know it, is refused:
nobody can sign a victim in to the attacker's account). POST /ui/login checks the key,
starts a session (pgcue.core.queue.sessions) and sets its token as the `pgcue_session`
cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's request carries
it), Secure when the page came over HTTPS, Path=/. The key itself goes nowhere: not into
a cookie, a URL or the browser's storage. POST /ui/logout ends the session (and, being a
state change made with the cookie, needs the page's CSRF token like every other).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import parse_qs

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie, State
from litestar.response import Redirect

from pgcue.api.auth import SESSION_COOKIE, cookie_value
from pgcue.api.panel.pages import SECURITY_HEADERS, page
from pgcue.core.auth import MAX_TOKEN_LENGTH

LOGIN_COOKIE = "pgcue_login"
FORM = "application/x-www-form-urlencoded"


def _secure(request: Request[Any, Any, Any]) -> bool:
    return request.scope.get("scheme") == "https"


def _login_page(request: Request[Any, Any, Any], status: int = 200, error: str | None = None) -> Response[str]:
    token = secrets.token_urlsafe(24)
    response = page(request, "login.html", status=status, title="Sign in", login_token=token, error=error)
    response.cookies.append(
        Cookie(
            key=LOGIN_COOKIE,
            value=token,
            path="/ui/login",
            max_age=3600,
            httponly=True,
            samesite="strict",
            secure=_secure(request),
        )
    )
    return response


@get("/ui/login", include_in_schema=False)
async def login_form(request: Request[Any, Any, Any]) -> Response[str]:
    return _login_page(request)


@post("/ui/login", include_in_schema=False, status_code=303)
async def login(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    """Start a session for the key in the form; back to the form saying why not."""
    if (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower() != FORM:
        return _login_page(request, 415, "Send the sign-in form (application/x-www-form-urlencoded).")
    try:
        form = parse_qs((await request.body()).decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return _login_page(request, 400, "The form could not be read; try again.")
    sent = (form.get("login_token") or [""])[0]
    expected = cookie_value(request.scope["headers"], LOGIN_COOKIE) or ""
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        return _login_page(request, 403, "This sign-in form expired or came from elsewhere; sign in again.")
    key = (form.get("key") or [""])[0].strip()
    caller = None
    if key and len(key) <= MAX_TOKEN_LENGTH and key.isascii() and key.isprintable():
        caller = await state.queue.keys.find(key)
    if caller is None:
        return _login_page(request, 401, "That is not a valid API key (make one with `pgcue keys create`).")
    token, _ = await state.queue.sessions.create(caller.key_id, state.settings.session_seconds)
    response: Response[Any] = Redirect("/ui", status_code=303, headers={"cache-control": "no-store"})
    response.cookies.extend(
        [
            Cookie(
                key=SESSION_COOKIE,
                value=token,
                path="/",
                max_age=int(state.settings.session_seconds),
                httponly=True,
                samesite="strict",
                secure=_secure(request),
            ),
            Cookie(key=LOGIN_COOKIE, value="", path="/ui/login", max_age=0, httponly=True, samesite="strict"),
        ]
    )
    return response


@post("/ui/logout", include_in_schema=False, status_code=200)
async def logout(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    """End this browser's session (the middleware checked its CSRF token)."""
    session = request.scope.get("state", {}).get("session")
    if session:
        await state.queue.sessions.delete(session)
        state.session_cache.forget(session)
    response: Response[Any] = Response({"signedOut": True}, headers=SECURITY_HEADERS)
    response.cookies.append(Cookie(key=SESSION_COOKIE, value="", path="/", max_age=0, httponly=True, samesite="strict"))
    return response


route_handlers = [login_form, login, logout]
