"""Connections: asyncpg pools for the service and workers, psycopg for sync callers."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
import psycopg
from pgcue.core.config import Settings

# What a database that went away (restart, killed connection, network) raises through
# asyncpg: loops that must ride out an outage catch exactly these and retry. asyncpg's
# InternalClientError is in it because a connection killed mid-operation raises it.
# (OSError covers TimeoutError too.)
DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)

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
    never keep session state (LISTEN and the session advisory lock of maintenance live on
    dedicated connections from connect(); claim locks are transaction-scoped), and asyncpg
    still rolls back a transaction left open before it calls this."""


def _connect_kwargs(settings: Settings, application_name: str) -> dict[str, Any]:
    server_settings = {"application_name": application_name}
    if settings.random_page_cost:
        server_settings["random_page_cost"] = str(settings.random_page_cost)
    return {
        "dsn": settings.database_url,
        "statement_cache_size": settings.statement_cache_size,
        "server_settings": server_settings,
    }


async def create_pool(
    settings: Settings, *, min_size: int = 1, max_size: int = 4, application_name: str = "pgcue"
) -> asyncpg.Pool:
    """A pool for queue operations; every connection decodes JSON with msgspec."""
    pool = await asyncpg.create_pool(
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        **_connect_kwargs(settings, application_name),
    )
    assert pool is not None
    return pool


async def connect(settings: Settings, *, application_name: str = "pgcue") -> asyncpg.Connection:
    """One dedicated connection (the LISTEN connection, the maintenance lock holder)."""
    conn = await asyncpg.connect(**_connect_kwargs(settings, application_name))
    await _init_connection(conn)
    return conn


def connect_sync(settings: Settings, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A psycopg connection (migrations, the CLI, sync callers)."""
    return psycopg.connect(settings.database_url, autocommit=autocommit, application_name="pgcue")
