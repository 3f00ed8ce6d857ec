"""Connections (asyncpg pools for the service and workers, psycopg for migrations and sync
callers) and the one definition of what a database error means.

`unavailable(exc)`: the database went away or cannot serve us now (a restart, a killed
connection, the network, too many connections). Loops ride it out and retry; the API
answers 503 with Retry-After. `fatal(exc)`: retrying cannot help until an operator acts
(the database refuses our credentials, does not exist). Anything else a statement raises
is about what it was given (a value PostgreSQL cannot store, a constraint) and is
handled where the statement runs: it is never retried as if the database were down.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
import psycopg

from pgcue.core.config import Settings

# SQLSTATE classes that mean "not now": connection exceptions, operator intervention
# (admin shutdown, crash recovery, cannot connect now), insufficient resources (too many
# connections, out of memory or disk).
_UNAVAILABLE_CLASSES = ("08", "57", "53")
# "Never, until someone acts": invalid authorization, no such database.
_FATAL_CLASSES = ("28", "3D")


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE of a driver error ('' when it has none)."""
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else ""


def unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database cannot be reached or cannot serve us now."""
    if isinstance(exc, OSError) and exc.filename is not None:
        # A file's error (an artifacts directory that is not one, a full disk): the driver's
        # socket errors name no file, not even a Unix socket's. Taken for a lost
        # connection, it was retried quietly for ever instead of failing what did it.
        return False
    if isinstance(exc, OSError | asyncpg.InterfaceError | asyncpg.InternalClientError | psycopg.OperationalError):
        # InterfaceError: a connection closed under us; InternalClientError: asyncpg's
        # protocol state broke when the server ended the connection mid-operation.
        return not fatal(exc)
    return sqlstate(exc).startswith(_UNAVAILABLE_CLASSES) and sqlstate(exc) != "57014"  # 57014: query_canceled


def fatal(exc: BaseException) -> bool:
    """True when the database refuses us for good: wrong credentials, missing database, a
    pooler that refuses a setting we send (PgBouncer and PGCUE_RANDOM_PAGE_COST)."""
    if sqlstate(exc).startswith(_FATAL_CLASSES):
        return True
    text = str(exc)
    if "unsupported startup parameter" in text:  # PgBouncer's answer (SQLSTATE 08P01): no retry helps
        return True
    return isinstance(exc, psycopg.OperationalError) and (
        "password authentication failed" in text or "does not exist" in text
    )


def bad_value(exc: BaseException) -> bool:
    """True when PostgreSQL refused a value it was given (data exception, SQLSTATE 22xxx):
    a timestamp out of range, a NUL in text, an invalid JSON number."""
    return sqlstate(exc).startswith("22")


def describe(exc: BaseException) -> str:
    """The first line of a driver error, for a log or a one-line message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


IDLE_SECONDS = 15.0

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON in and out through msgspec: faster than the stdlib and the same encoder
    # everywhere. Text format keeps it compatible with COPY and plain text params.
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=lambda v: _encode(v).decode(), decoder=_decode, schema="pg_catalog", format="text"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's reset query. The default reset sends `SELECT
    pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every release: one more
    round trip for every claim, completion and API request. pgcue's pooled connections
    keep no session state (LISTEN lives on its own connection; the maintenance leader's
    session lock is released before its connection goes back; claim locks are
    transaction-scoped), and asyncpg still rolls back a transaction left open first."""


def _connect_kwargs(settings: Settings, application_name: str, *, direct: bool = False) -> dict[str, Any]:
    server_settings = {"application_name": application_name}
    # The planner settings ride in the start-up packet. A pooler in front (the pooled URL
    # differs from the direct one) refuses start-up parameters it does not track
    # (PgBouncer: "unsupported startup parameter"), and a transaction pooler could not keep
    # them per session anyway, so pooled connections send none: behind a pooler they are
    # set on the role (docs/deploy.md). Direct sessions still get them.
    if direct or not settings.pooled:
        if settings.random_page_cost:
            server_settings["random_page_cost"] = str(settings.random_page_cost)
        if not settings.jit:
            server_settings["jit"] = "off"
    return {
        "dsn": settings.direct_url if direct else settings.database_url,
        "statement_cache_size": settings.statement_cache_size,
        "server_settings": server_settings,
    }


async def create_pool(
    settings: Settings, *, min_size: int = 1, max_size: int = 4, application_name: str = "pgcue"
) -> asyncpg.Pool:
    """A pool for queue operations; every connection decodes JSON with msgspec. A
    connection idle for IDLE_SECONDS is closed (down to min_size), so a burst (a worker's
    start-up, a spike of requests) does not leave a process holding connections it no
    longer uses."""
    pool = await asyncpg.create_pool(
        min_size=min_size,
        max_size=max_size,
        max_inactive_connection_lifetime=IDLE_SECONDS,
        init=_init_connection,
        reset=_keep_session,
        **_connect_kwargs(settings, application_name),
    )
    assert pool is not None
    return pool


async def connect(settings: Settings, *, application_name: str = "pgcue") -> asyncpg.Connection:
    """One dedicated session with PostgreSQL itself (PGCUE_DIRECT_DATABASE_URL, never a
    transaction pooler): a LISTEN connection, the maintenance leader's lock."""
    conn = await asyncpg.connect(**_connect_kwargs(settings, application_name, direct=True))
    await _init_connection(conn)
    return conn


def connect_sync(settings: Settings, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A psycopg session with PostgreSQL itself (migrations, the schema check)."""
    return psycopg.connect(
        settings.direct_url,
        autocommit=autocommit,
        application_name="pgcue",
        # psycopg prepares a statement run 5 times on a connection; with the statement
        # cache off (a pooler in between) it must not either.
        prepare_threshold=None if settings.statement_cache_size == 0 else 5,
    )
