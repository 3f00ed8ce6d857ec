"""Authentication, applied to the whole app: every route needs a caller except the ones in
PUBLIC, so a new route is private unless it is added there. tests/http/test_auth.py walks
every route the app has and proves it.

A caller is either a program, with `Authorization: Bearer <key>` (unchanged), or a
person in a browser, with the Jobs panel's session cookie (pgcue.api.panel): an HttpOnly,
SameSite=Strict cookie holding a random session token, made when the person signed in
with a key (the key itself is never kept by the browser, nor put in a URL). A request
with both is judged by its bearer key alone. A cookie is sent by the browser on its own,
so every state-changing request made with one (anything but GET, HEAD and OPTIONS) must
also carry the session's CSRF token in `X-CSRF-Token` (derived from the session token,
which only this origin's pages can learn) and must not come from another origin; a
bearer key is never sent on its own, so it needs neither.

An anonymous browser asking for a panel page is sent to the sign-in page (303); anything
else anonymous is a 401 problem.

A middleware rather than a Litestar guard: it runs before anything reads the body (an
anonymous request is 401 whatever it sends), and a guard made Litestar copy the route
handler on every call (about 6 % of the API's CPU under `make bench`'s http load).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable
from typing import Any, cast

from litestar.types import ASGIApp, Receive, Scope, Send

from pgcue.api.problems import ApiProblem, unauthenticated
from pgcue.core.auth import MAX_TOKEN_LENGTH
from pgcue.core.models import Caller
from pgcue.core.queue import Queue

# Paths anyone may call: health and readiness probes, Prometheus, the OpenAPI document, and
# the panel's sign-in page and its static files (CSS, JS: nothing secret).
PUBLIC = ("/healthz", "/readyz", "/metrics", "/schema", "/ui/login", "/ui/static")

CACHE_SECONDS = 2.0  # a revoked key, an ended session or a new channel takes effect within this
CACHE_SIZE = 10_000
SESSION_COOKIE = "pgcue_session"
CSRF_HEADER = b"x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PANEL_PAGES = ("/", "/ui")  # what an anonymous browser is sent to sign in for


def is_public(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PUBLIC)


def is_panel_page(path: str) -> bool:
    return path == "/" or path == "/ui" or (path.startswith("/ui/") and not path.startswith("/ui/fragments/"))


class KeyCache:
    """Callers by token (API keys, or session tokens), each kept CACHE_SECONDS."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Caller]] = {}

    def get(self, token: str) -> Caller | None:
        hit = self._entries.get(token)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, token: str, caller: Caller) -> None:
        if len(self._entries) >= CACHE_SIZE:
            self._entries.clear()
        self._entries[token] = (time.monotonic() + CACHE_SECONDS, caller)

    def forget(self, token: str) -> None:
        self._entries.pop(token, None)


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: derived from its token, so nothing more is stored,
    and unknown to anyone who cannot read this origin's pages."""
    digest = hashlib.sha256(b"pgcue-csrf\0" + session_token.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _valid(token: str) -> bool:
    return bool(token) and len(token) <= MAX_TOKEN_LENGTH and token.isascii() and token.isprintable()


async def caller_for(header: str | None, queue: Queue, cache: KeyCache) -> Caller:
    """The Caller of an Authorization header's value; a 401 problem otherwise."""
    if not header:
        raise unauthenticated("send an API key: Authorization: Bearer <key> (create one with `pgcue keys create`)")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthenticated("the Authorization header must be `Bearer <key>`")
    if not _valid(token):
        raise unauthenticated("this API key is not valid (check it, or create one with `pgcue keys create`)")
    caller = cache.get(token)
    if caller is None:
        caller = await queue.keys.find(token)
        if caller is None:
            raise unauthenticated("this API key is not valid (check it, or create one with `pgcue keys create`)")
        cache.put(token, caller)
    return caller


async def session_caller(token: str, queue: Queue, cache: KeyCache) -> Caller | None:
    """The Caller of a panel session token, or None (unknown, expired, signed out, or its
    key revoked)."""
    if not _valid(token):
        return None
    caller = cache.get(token)
    if caller is None:
        caller = await queue.sessions.find(token)
        if caller is None:
            return None
        cache.put(token, caller)
    return caller


def cookie_value(headers: Iterable[tuple[bytes, bytes]], name: str) -> str | None:
    """The value of cookie `name` in a request's Cookie headers (the first one)."""
    want = name.encode()
    for key, value in headers:
        if key != b"cookie":
            continue
        for part in value.split(b";"):
            k, sep, v = part.strip().partition(b"=")
            if sep and k == want:
                return v.strip().strip(b'"').decode("latin-1")
    return None


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _same_origin(scope: Scope, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """The request comes from this origin's pages (or says nothing of where it comes from,
    as an old browser or a program may): Sec-Fetch-Site and Origin, when sent, agree."""
    site = _header(headers, b"sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = _header(headers, b"origin")
    if origin is None:
        return True
    host = _header(headers, b"host") or ""
    return origin in (f"{scope.get('scheme', 'http')}://{host}", f"https://{host}", f"http://{host}")


def _forbidden(detail: str) -> ApiProblem:
    return ApiProblem(403, "csrf", "Cross-site request refused", detail)


async def _sign_in_first(scope: Scope, send: Send) -> None:
    """Send an anonymous browser to the sign-in page."""
    start: Any = {
        "type": "http.response.start",
        "status": 303,
        "headers": [(b"location", b"/ui/login"), (b"cache-control", b"no-store"), (b"content-length", b"0")],
    }
    await send(start)
    await send(cast(Any, {"type": "http.response.body", "body": b""}))


def _wants_html(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    accept = _header(headers, b"accept") or ""
    return "text/html" in accept


def authentication(app: ASGIApp) -> ASGIApp:
    """App middleware: resolve the caller of every request to a non-public path; routes
    read it with pgcue.api.access.caller_of()."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_public(scope["path"]):
            headers = scope["headers"]
            method = str(scope.get("method", "GET"))
            state = scope["litestar_app"].state
            header = _header(headers, b"authorization")
            session = None
            if header is not None:
                caller = await caller_for(header, state.queue, state.key_cache)
            else:
                session = cookie_value(headers, SESSION_COOKIE)
                found = None if session is None else await session_caller(session, state.queue, state.session_cache)
                if found is None:
                    if method in ("GET", "HEAD") and is_panel_page(scope["path"]) and _wants_html(headers):
                        await _sign_in_first(scope, send)
                        return
                    if session is not None:
                        raise unauthenticated(
                            "your panel session has ended (signed out, expired, or its key revoked); "
                            "sign in again at /ui/login"
                        )
                    raise unauthenticated(
                        "send an API key: Authorization: Bearer <key> (create one with `pgcue keys create`)"
                    )
                caller = found
                assert session is not None
                if method not in SAFE_METHODS:
                    sent = _header(headers, CSRF_HEADER) or ""
                    if not hmac.compare_digest(sent.encode(), csrf_token(session).encode()):
                        raise _forbidden(
                            "a request made with the panel's session cookie must carry its CSRF token "
                            "(X-CSRF-Token); reload the page and try again"
                        )
                    if not _same_origin(scope, headers):
                        raise _forbidden("a request made with the panel's session cookie must come from the panel")
            scope.setdefault("state", {})["caller"] = caller
            if session is not None:
                scope["state"]["session"] = session
        await app(scope, receive, send)

    return middleware
