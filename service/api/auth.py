"""Authentication, applied to the whole app: every route needs `Authorization: Bearer
<key>` except the ones in PUBLIC, so a new route is private unless it is added there.
tests/http/test_auth.py walks every route the app has and proves it.

A middleware rather than a Litestar guard: it runs before anything reads the body (an
anonymous request is 401 whatever it sends), and a guard made Litestar copy the route
handler on every call (about 6 % of the API's CPU under `make bench`'s http load).
"""

from __future__ import annotations

import time

from litestar.types import ASGIApp, Receive, Scope, Send

from pgcue.api.problems import unauthenticated
from pgcue.core.auth import MAX_TOKEN_LENGTH
from pgcue.core.models import Caller
from pgcue.core.queue import Queue

# Paths anyone may call: health and readiness probes, Prometheus, the OpenAPI document.
PUBLIC = ("/healthz", "/readyz", "/metrics", "/schema")

CACHE_SECONDS = 2.0  # a revoked key or a new channel takes effect within this
CACHE_SIZE = 10_000


def is_public(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PUBLIC)


class KeyCache:
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


async def caller_for(header: str | None, queue: Queue, cache: KeyCache) -> Caller:
    """The Caller of an Authorization header's value; a 401 problem otherwise."""
    if not header:
        raise unauthenticated("send an API key: Authorization: Bearer <key> (create one with `pgcue keys create`)")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthenticated("the Authorization header must be `Bearer <key>`")
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii() or not token.isprintable():
        raise unauthenticated("this API key is not valid (check it, or create one with `pgcue keys create`)")
    caller = cache.get(token)
    if caller is None:
        caller = await queue.keys.find(token)
        if caller is None:
            raise unauthenticated("this API key is not valid (check it, or create one with `pgcue keys create`)")
        cache.put(token, caller)
    return caller


def authentication(app: ASGIApp) -> ASGIApp:
    """App middleware: resolve the caller of every request to a non-public path; routes
    read it with pgcue.api.access.caller_of()."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_public(scope["path"]):
            header = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    header = value.decode("latin-1")
                    break
            state = scope["litestar_app"].state
            caller = await caller_for(header, state.queue, state.key_cache)
            scope.setdefault("state", {})["caller"] = caller
        await app(scope, receive, send)

    return middleware
