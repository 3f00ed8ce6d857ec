"""Panel sessions: a person signs in with an API key once and the browser then holds a
random session token in an HttpOnly cookie, never the key. Only the token's SHA-256 is
stored; a session acts with its key's rights and ends with the key (revoked: at once),
at its expiry, or at sign-out (pgcue.api.auth reads it, pgcue.api.panel makes it)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TYPE_CHECKING

from pgcue.core.auth import MAX_TOKEN_LENGTH, token_hash
from pgcue.core.models import Caller

if TYPE_CHECKING:
    from pgcue.core.queue import Queue

SESSION_PREFIX = "pgcue_s_"


class Sessions:
    def __init__(self, queue: Queue) -> None:
        self.q = queue

    async def create(self, key_id: int, seconds: float) -> tuple[str, datetime]:
        """A new session for the key `key_id`, valid `seconds`: its token (shown to the
        browser once, as a cookie) and its expiry."""
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        row = await self.q.sql.fetchrow(self.q.pool, "insert_session", token_hash(token), key_id, float(seconds))
        assert row is not None
        return token, row["expires_at"]

    async def find(self, token: str) -> Caller | None:
        """The caller behind a session token; None when unknown, expired or its key revoked."""
        if not token.startswith(SESSION_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
            return None
        row = await self.q.sql.fetchrow(self.q.pool, "find_session", token_hash(token))
        if row is None:
            return None
        return Caller(row["user_id"], row["plan"], row["admin"], frozenset(row["channels"]), row["key_id"])

    async def delete(self, token: str) -> None:
        """End a session (sign-out)."""
        await self.q.sql.execute(self.q.pool, "delete_session", token_hash(token))
