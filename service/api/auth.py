"""Who is calling: the bearer key of a request, resolved to a Caller (briefly cached)."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.types import ASGIApp, Receive, Scope, Send
from pgcue.api.problems import unauthenticated
from pgcue.core.auth import Caller, find_caller

CACHE_SECONDS = 2.0  # a revoked key or a new channel takes effect within this
CACHE_SIZE = 10_000


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


async def resolve_caller(request: Request[Any, Any, Any], state: State) -> Caller:
    """The Caller of `Authorization: Bearer <key>`; 401 problem otherwise."""
    return await caller_for(request.headers.get("authorization"), state)


async def caller_for(header: str | None, state: State) -> Caller:
    """The Caller of an Authorization header's value; 401 problem otherwise."""
    if not header:
        raise unauthenticated("send an API key: Authorization: Bearer <key> (create one with `pgcue keys create`)")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthenticated("the Authorization header must be `Bearer <key>`")
    if len(token) > 200:
        raise unauthenticated("this API key is not valid (check it, or create one with `pgcue keys create`)")
    cache: KeyCache = state.key_cache
    caller = cache.get(token)
    if caller is None:
        caller = await find_caller(state.queue.pool, state.queue.sql, token)
        if caller is None:
            raise unauthenticated("this API key is not valid (check it, or create one with `pgcue keys create`)")
        cache.put(token, caller)
    return caller


def authenticated(app: ASGIApp) -> ASGIApp:
    """Route middleware: resolve the request's caller before anything reads its body, so an
    anonymous request is 401 whatever it sends; routes read it with caller_of().

    A middleware rather than a Litestar guard because Litestar copies the route handler
    for every guard call (copy.copy of the handler, about 6 % of the API's CPU under the
    `make bench` http load)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    header = value.decode("latin-1")
                    break
            caller = await caller_for(header, scope["litestar_app"].state)
            scope.setdefault("state", {})["caller"] = caller
        await app(scope, receive, send)

    return middleware


def caller_of(request: Request[Any, Any, Any]) -> Caller:
    """The caller `authenticated` (or the `authenticate` guard) resolved for this request."""
    caller: Caller = request.scope["state"]["caller"]
    return caller
