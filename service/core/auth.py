"""Users, channels and API keys: who may do what.

A key is `pgcue_` + 32 random bytes (URL-safe base64); only its SHA-256 is stored. A user
has a plan (free | paid) and owns channels; a caller sees the jobs of its own channels,
an admin key sees every channel. Channels are created by an operator, with the key or
later (`pgcue keys create --channel C`), never by a first enqueue: channel ids are global,
so first-come creation would let anyone squat another user's channel name.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import asyncpg
from pgcue.core.errors import PgcueError
from pgcue.core.statements import Sql

TOKEN_PREFIX = "pgcue_"
PLANS = ("free", "paid")
PLAN_RANK = {"free": 0, "paid": 1}


class AuthError(PgcueError):
    """A key cannot be created as asked (a channel belongs to someone else ...)."""


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class Caller:
    """The user behind a request's key."""

    user_id: str
    plan: str
    admin: bool
    channels: frozenset[str]

    def sees(self, channel_id: str) -> bool:
        return self.admin or channel_id in self.channels

    def may_use(self, type_plan: str) -> bool:
        return self.admin or PLAN_RANK.get(self.plan, 0) >= PLAN_RANK.get(type_plan, 1)


async def find_caller(pool: asyncpg.Pool, sql: Sql, token: str) -> Caller | None:
    row = await sql.fetchrow(pool, "find_api_key", token_hash(token))
    if row is None:
        return None
    return Caller(row["user_id"], row["plan"], row["admin"], frozenset(row["channels"]))


async def create_key(
    pool: asyncpg.Pool,
    sql: Sql,
    user: str,
    *,
    plan: str | None = None,
    admin: bool = False,
    channels: list[str] = (),  # type: ignore[assignment]
    label: str = "",
    token: str | None = None,
) -> str:
    """Create (or update the plan of) `user`, give it `channels`, and make a key; returns
    the token, which is shown once. Refuses, writing nothing, if a channel is another's."""
    if not 1 <= len(user) <= 200 or "\x00" in user:
        raise AuthError("--user must be 1 to 200 characters")
    if plan is not None and plan not in PLANS:
        raise AuthError(f"--plan must be one of {', '.join(PLANS)}")
    for c in channels:
        if not 1 <= len(c) <= 200 or "\x00" in c:
            raise AuthError(f"channel {c!r} must be 1 to 200 characters")
    token = token or new_token()
    async with pool.acquire() as conn, conn.transaction():
        await sql.fetchrow(conn, "upsert_user", user, plan)
        if channels:
            owned = await sql.fetch(conn, "create_channels", user, list(channels))
            taken = sorted(r["id"] for r in owned if r["owner_id"] != user)
            if taken:
                raise AuthError(f"channel(s) {', '.join(taken)} already belong to another user; choose other names")
        await sql.fetchrow(conn, "insert_api_key", token_hash(token), user, admin, label)
    return token


async def ensure_dev_key(pool: asyncpg.Pool, sql: Sql, saved: str | None) -> str:
    """The development key of `make run`: the saved one while it still works, else a new
    one (user `dev`, paid plan, channel `demo`); the caller saves what it gets."""
    if saved and await find_caller(pool, sql, saved) is not None:
        return saved
    return await create_key(pool, sql, "dev", plan="paid", channels=["demo"], label="make run")
