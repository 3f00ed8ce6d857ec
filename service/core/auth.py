"""API keys: a key is `pgcue_` + 32 random bytes (URL-safe base64), and only its SHA-256 is
stored. A user has a plan (free | paid) and owns channels; a caller sees the jobs of its
own channels, an admin key sees every channel. Channels are created by an operator, with
the key or later (`pgcue keys create --channel C`), never by a first enqueue: channel ids
are global, so first-come creation would let anyone squat another user's channel name.

The keys themselves are read and written through the queue façade (Queue.keys).
"""

from __future__ import annotations

import hashlib
import secrets

from pgcue.core.errors import AuthError
from pgcue.core.models import PLANS

TOKEN_PREFIX = "pgcue_"
MAX_TOKEN_LENGTH = 200


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def check_names(user: str, plan: str | None, channels: list[str]) -> None:
    """Refuse a user id, plan or channel id pgcue cannot store (AuthError, nothing written)."""
    if not 1 <= len(user) <= 200 or "\x00" in user:
        raise AuthError("--user must be 1 to 200 characters, without NUL")
    if plan is not None and plan not in PLANS:
        raise AuthError(f"--plan must be one of {', '.join(PLANS)}")
    for c in channels:
        if not 1 <= len(c) <= 200 or "\x00" in c:
            raise AuthError(f"channel {c!r} must be 1 to 200 characters, without NUL")
