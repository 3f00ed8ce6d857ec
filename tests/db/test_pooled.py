"""pgcue behind a transaction pooler: queries through it, sessions direct
(PGCUE_DIRECT_DATABASE_URL). The leader's lock lives on a direct session, never on a pooled
connection, and a follower opens no direct session while someone leads. Under
`pytest --pgbouncer` the fixtures' DSN names a real PgBouncer in transaction mode and the
routing itself is checked against PgBouncer's own counters."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import psycopg
import pytest

from pgcue.core import db
from pgcue.core.config import Settings
from pgcue.core.queue import Queue
from tests import conftest
from tests.conftest import direct_dsn, make_settings, run_cli

pytestmark = pytest.mark.timeout(60)


def _lock_holders(direct: str) -> list[tuple[str, int]]:
    """(application_name, pid) of every session of the database holding the maintenance lock."""
    with psycopg.connect(direct, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.application_name, a.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND ((l.classid::int8 << 32) | l.objid::int8) = hashtext('pgcue.maintenance')::int8 "
            "AND a.datname = current_database()"
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _direct_sessions(direct: str, app: str) -> int:
    with psycopg.connect(direct, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            (app,),
        ).fetchone()
    return int(row[0]) if row else 0


async def test_a_pooled_leader_holds_its_lock_on_a_direct_session(database: str) -> None:
    settings = make_settings(database).replace(statement_cache_size=0, direct_database_url=direct_dsn(database))
    direct = settings.direct_url
    pool_a = await db.create_pool(settings, max_size=2)
    pool_b = await db.create_pool(settings, max_size=2)

    def connect() -> Any:
        return db.connect(settings, application_name="pgcue-leader")

    try:
        a, b = Queue(pool_a), Queue(pool_b)
        lead = await a.upkeep.try_lead(connect)
        assert lead is not None
        holders = _lock_holders(direct)
        assert [name for name, _ in holders] == ["pgcue-leader"]  # a direct session, not a pooled one
        await lead.check()
        # A follower learns it through its pool and opens no direct session to try.
        assert await b.upkeep.try_lead(connect) is None
        assert _direct_sessions(direct, "pgcue-leader") == 1
        await lead.release()
        assert _lock_holders(direct) == []  # its session ended, the lock with it
        successor = await b.upkeep.try_lead(connect)
        assert successor is not None
        assert [name for name, _ in _lock_holders(direct)] == ["pgcue-leader"]
        await successor.release()
        assert _direct_sessions(direct, "pgcue-leader") == 0
    finally:
        await pool_a.close()
        await pool_b.close()


async def test_a_leader_whose_session_dies_loses_the_lock_and_says_so(database: str) -> None:
    settings = make_settings(database).replace(statement_cache_size=0, direct_database_url=direct_dsn(database))
    pool = await db.create_pool(settings, max_size=2)
    try:
        lead = await Queue(pool).upkeep.try_lead(lambda: db.connect(settings, application_name="pgcue-leader"))
        assert lead is not None
        [(_, pid)] = _lock_holders(settings.direct_url)
        with psycopg.connect(settings.direct_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises((ConnectionError, asyncpg.InterfaceError, asyncpg.ConnectionDoesNotExistError)):
            for _ in range(50):
                await lead.check()
        await lead.release()
        assert _lock_holders(settings.direct_url) == []
    finally:
        await pool.close()


def test_direct_url_defaults_to_the_database_url() -> None:
    s = Settings(database_url="postgresql://q@pooler:6432/studio")
    assert s.direct_url == s.database_url and not s.pooled
    t = s.replace(direct_database_url="postgresql://q@db:5432/studio")
    assert t.direct_url == "postgresql://q@db:5432/studio" and t.pooled


def test_planner_settings_go_on_direct_sessions_and_never_through_a_pooler() -> None:
    s = Settings(database_url="postgresql://q@pooler:6432/studio", direct_database_url="postgresql://q@db:5432/studio")
    pooled = db._connect_kwargs(s, "pgcue")["server_settings"]
    direct = db._connect_kwargs(s, "pgcue", direct=True)["server_settings"]
    assert pooled == {"application_name": "pgcue"}
    assert direct["jit"] == "off" and direct["random_page_cost"] == "1.1"
    alone = db._connect_kwargs(Settings(database_url="postgresql://q@db:5432/studio"), "pgcue")
    assert alone["server_settings"]["jit"] == "off"


@pytest.mark.skipif(conftest._BOUNCER is None, reason="needs pytest --pgbouncer")
async def test_the_default_settings_connect_through_pgbouncer_and_sessions_keep_theirs(database: str) -> None:
    # Defaults: random_page_cost 1.1 and JIT off. PgBouncer refuses both as start-up
    # parameters; the pooled connection must not send them, the direct session must.
    settings = Settings(
        database_url=conftest.pooled_dsn(direct_dsn(database)),
        direct_database_url=direct_dsn(database),
        statement_cache_size=0,
    )
    assert settings.pooled and settings.random_page_cost == 1.1 and not settings.jit
    pool = await db.create_pool(settings, max_size=1)
    try:
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()
    conn = await db.connect(settings, application_name="pgcue-test-direct")
    try:
        assert await conn.fetchval("SHOW jit") == "off"
        assert await conn.fetchval("SHOW random_page_cost") == "1.1"
    finally:
        await conn.close()


@pytest.mark.skipif(conftest._BOUNCER is None, reason="needs pytest --pgbouncer")
async def test_queries_go_through_pgbouncer_and_sessions_do_not(settings: Settings, pool: asyncpg.Pool) -> None:
    bouncer = conftest._BOUNCER
    assert urlsplit(settings.database_url).port == bouncer.port
    assert settings.statement_cache_size == 0 and settings.pooled
    dbname = urlsplit(settings.database_url).path.lstrip("/")

    def queries() -> int:
        with psycopg.connect(bouncer.admin_dsn(), autocommit=True, prepare_threshold=None) as admin:
            cur = admin.execute("SHOW STATS")
            names = [c.name for c in cur.description or []]
            for row in cur.fetchall():
                if row[names.index("database")] == dbname:
                    return int(row[names.index("total_query_count")])
        return 0

    before = queries()
    for _ in range(20):
        await pool.fetchval("SELECT 1")
    conn = await db.connect(settings, application_name="pgcue-test-direct")
    try:
        assert await conn.fetchval("SELECT inet_server_port()") == (urlsplit(conftest.BASE_DSN).port or 5432)
    finally:
        await conn.close()
    # PgBouncer's counters move with the pooled queries (its stats refresh every few seconds).
    for _ in range(100):
        if queries() >= before + 20:
            break
        time.sleep(0.2)
    assert queries() >= before + 20


@pytest.mark.skipif(conftest._BOUNCER is None, reason="needs pytest --pgbouncer")
def test_a_setting_pgbouncer_refuses_stops_the_process_saying_what_to_change(database: str) -> None:
    done = run_cli(
        "jobs",
        "list",
        dsn=database,
        env={"PGCUE_STATEMENT_CACHE_SIZE": "0", "PGCUE_RANDOM_PAGE_COST": "1.1"},
    )
    assert done.returncode == 78, done.stderr
    assert "unsupported startup parameter" in done.stderr and "PGCUE_RANDOM_PAGE_COST=0" in done.stderr
