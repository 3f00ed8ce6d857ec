"""Callers and API keys: who is behind a token, and an operator's keys (create, list,
revoke, rotate). Tokens are never stored, only their SHA-256 (pgcue.core.auth)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pgcue.core.auth import check_names, new_token, token_hash
from pgcue.core.errors import AuthError
from pgcue.core.models import ApiKey, Caller

if TYPE_CHECKING:
    from pgcue.core.queue import Queue


def _caller(row: object) -> Caller:
    r = row  # an asyncpg Record
    return Caller(r["user_id"], r["plan"], r["admin"], frozenset(r["channels"]), r["key_id"])  # type: ignore[index]


class Keys:
    def __init__(self, queue: Queue) -> None:
        self.q = queue

    async def find(self, token: str) -> Caller | None:
        """The caller behind a token, or None (unknown or revoked)."""
        row = await self.q.sql.fetchrow(self.q.pool, "find_api_key", token_hash(token))
        return None if row is None else _caller(row)

    async def callers(self, key_ids: Sequence[int]) -> dict[int, Caller]:
        """The callers of these keys as they stand now; a revoked key is missing."""
        rows = await self.q.sql.fetch(self.q.pool, "find_api_keys_by_id", list(key_ids))
        return {r["key_id"]: _caller(r) for r in rows}

    async def create(
        self,
        user: str,
        *,
        plan: str | None = None,
        admin: bool = False,
        channels: Sequence[str] = (),
        label: str = "",
        token: str | None = None,
    ) -> str:
        """Create (or update the plan of) `user`, give it `channels`, and make a key;
        returns the token, which is shown once. Refuses, writing nothing, if a channel is
        another user's."""
        check_names(user, plan, list(channels))
        if "\x00" in label or len(label) > 200:
            raise AuthError("--label must be at most 200 characters, without NUL")
        token = token or new_token()
        async with self.q.transaction() as tx:
            await tx.sql.fetchrow(tx.pool, "upsert_user", user, plan)
            if channels:
                owned = await tx.sql.fetch(tx.pool, "create_channels", user, list(channels))
                taken = sorted(r["id"] for r in owned if r["owner_id"] != user)
                if taken:
                    raise AuthError(f"channel(s) {', '.join(taken)} already belong to another user; choose other names")
            await tx.sql.fetchrow(tx.pool, "insert_api_key", token_hash(token), user, admin, label)
        return token

    async def list(self, user: str | None = None, *, revoked: bool = False) -> list[ApiKey]:
        rows = await self.q.sql.fetch(self.q.pool, "list_api_keys", user, revoked)
        return [
            ApiKey(
                id=r["id"],
                user_id=r["user_id"],
                admin=r["admin"],
                label=r["label"],
                created_at=r["created_at"],
                revoked_at=r["revoked_at"],
                plan=r["plan"],
                channels=tuple(r["channels"]),
            )
            for r in rows
        ]

    async def revoke(self, key_id: int) -> None:
        """Revoke a key at once: requests with it are 401 and its open streams end within
        seconds (the API re-checks the keys of open streams)."""
        row = await self.q.sql.fetchrow(self.q.pool, "revoke_api_key", key_id)
        if row is None:
            raise AuthError(f"no key {key_id} (see `pgcue keys list`)")
        if row["was_revoked"]:
            raise AuthError(f"key {key_id} was already revoked")

    async def rotate(self, key_id: int) -> str:
        """A new key for the same user, admin flag and label, and the old one revoked, in
        one transaction; returns the new token."""
        token = new_token()
        async with self.q.transaction() as tx:
            row = await tx.sql.fetchrow(tx.pool, "revoke_api_key", key_id)
            if row is None:
                raise AuthError(f"no key {key_id} (see `pgcue keys list`)")
            if row["was_revoked"]:
                raise AuthError(f"key {key_id} is revoked; create a new one with `pgcue keys create`")
            label = row["label"] if "rotated" in row["label"] else f"{row['label']} (rotated from {key_id})".strip()
            await tx.sql.fetchrow(tx.pool, "insert_api_key", token_hash(token), row["user_id"], row["admin"], label)
        return token

    async def ensure_dev_key(self, saved: str | None) -> str:
        """The development key of `make run`: the saved one while it still works, else a
        new one (user `dev`, paid plan, channel `demo`); the caller saves what it gets."""
        if saved and await self.find(saved) is not None:
            return saved
        return await self.create("dev", plan="paid", channels=["demo"], label="make run")
