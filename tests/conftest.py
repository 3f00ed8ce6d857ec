"""Test fixtures: a real PostgreSQL, one migrated template database per run, a fresh
clone of it per test, and real worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import psycopg
import pytest
from psycopg import sql as psql

from pgcue.core import db, migrate
from pgcue.core.config import Settings
from pgcue.core.queue import Queue
from pgcue.workers.runtime import registry

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.helpers.apiserver"]  # the `api` fixture: the real app served on loopback

BASE_DSN = os.environ.get("PGCUE_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
FINISHED = {"completed", "failed", "cancelled"}
# A payload each studio type's schema accepts (for tests about anything but the payload).
VALID_PAYLOADS: dict[str, dict[str, Any]] = {
    "tts": {"text": "Hello there."},
    "render": {"scenes": [{"color": "#1d3557", "duration": 1}]},
    "resource-download": {"urls": ["https://example.com/a.png"]},
    "orchestrate": {"pipeline": "episode", "inputs": {"topic": "tides"}},
    "idea": {"topic": "tides"},
    "proposals": {"brief": "a series on tides"},
    "fact-check": {"text": "The moon moves the tides."},
    "humanize": {"text": "In order to commence, we utilize the tides."},
    "discover": {"query": "tides"},
    "generate": {"kind": "image", "model": "acme/painter", "input": {"prompt": "a lighthouse"}},
}


def valid_payload(job_type: str) -> dict[str, Any]:
    return dict(VALID_PAYLOADS.get(job_type, {}))


def dsn_for(dbname: str) -> str:
    return urlsplit(BASE_DSN)._replace(path=f"/{dbname}").geturl()


# --- through PgBouncer: `pytest --pgbouncer` or PGCUE_TEST_PGBOUNCER=1 ---------------------
# The fixtures' database DSN then names a real PgBouncer in transaction mode (started for
# the session, tests/helpers/pgbouncer.py); settings send queries through it with the
# statement cache off and keep sessions (LISTEN, the leader's lock) direct.
_BOUNCER: Any = None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--pgbouncer",
        action="store_true",
        default=os.environ.get("PGCUE_TEST_PGBOUNCER", "") not in ("", "0"),
        help="run the fixtures' queries through a PgBouncer in transaction mode (started here)",
    )


def pytest_configure(config: pytest.Config) -> None:
    global _BOUNCER
    if config.getoption("--pgbouncer") and _BOUNCER is None:
        from tests.helpers import pgbouncer

        _BOUNCER = pgbouncer.start(BASE_DSN)


def pytest_unconfigure(config: pytest.Config) -> None:
    global _BOUNCER
    if _BOUNCER is not None:
        _BOUNCER.stop()
        _BOUNCER = None


def pytest_report_header(config: pytest.Config) -> str | None:
    if _BOUNCER is None:
        return None
    return f"pgcue: queries through PgBouncer (transaction mode) on 127.0.0.1:{_BOUNCER.port}"


def pooled_dsn(direct: str) -> str:
    """What a test connects to for queries: `direct`, or it through the session's PgBouncer."""
    return direct if _BOUNCER is None else _BOUNCER.dsn(direct)


def direct_dsn(dsn: str) -> str:
    """The test PostgreSQL itself, for a DSN that may name the session's PgBouncer."""
    base = urlsplit(BASE_DSN)
    return urlsplit(dsn)._replace(netloc=base.netloc).geturl()


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(BASE_DSN, autocommit=True)


def _drop(dbname: str) -> None:
    with _admin() as conn:
        conn.execute(psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(dbname)))


def make_settings(dsn: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = dict(
        database_url=dsn,
        poll_interval=0.5,
        rescue_interval=0.5,
        report_interval=0.05,
        retry_base_seconds=0.1,
        shutdown_grace=5.0,
        log_format="json",
    )
    if _BOUNCER is not None and dsn != direct_dsn(dsn):  # behind PgBouncer, as docs/deploy.md says
        # pgcue sends no planner settings on pooled connections (PgBouncer refuses them).
        base.update(statement_cache_size=0, direct_database_url=direct_dsn(dsn))
    base.update(overrides)
    return Settings(**base)


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    """A database migrated once per run, with the test job types registered."""
    name = f"pgcue_tmpl_{uuid.uuid4().hex[:10]}"
    with _admin() as conn:
        conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(name)))
    try:
        settings = make_settings(dsn_for(name))
        with db.connect_sync(settings) as conn:
            migrate.migrate(conn, settings.schema)
        registry.load(["tests.helpers.jobtypes"])

        async def register() -> None:
            pool = await db.create_pool(settings, min_size=1, max_size=1)
            try:
                await Queue(pool).register_types([s.row() for s in registry.all_types()])
            finally:
                await pool.close()

        asyncio.run(register())
        yield name
    finally:
        _drop(name)


@pytest.fixture
def database(template_db: str) -> Iterator[str]:
    """A fresh database cloned from the template; its DSN."""
    name = f"pgcue_test_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(
            psql.SQL("CREATE DATABASE {} TEMPLATE {}").format(psql.Identifier(name), psql.Identifier(template_db))
        )
    try:
        yield pooled_dsn(dsn_for(name))
    finally:
        _drop(name)


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A new database with nothing of pgcue in it; its DSN."""
    name = f"pgcue_empty_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(name)))
    try:
        yield dsn_for(name)
    finally:
        _drop(name)


def run_cli(
    *args: str, dsn: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `pgcue ARGS` as a user would; bounded."""
    environ = dict(os.environ, PGCUE_DATABASE_URL=dsn, PGCUE_LOG_FORMAT="json", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "pgcue.cli", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def settings(database: str) -> Settings:
    return make_settings(database)


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(settings, min_size=1, max_size=5)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
async def queue(pool: asyncpg.Pool) -> Queue:
    return Queue(pool)


# --- waiting on the database, woken by its notifications ------------------------------------


class Watcher:
    """Waits for job states, woken by the `events` notifications, re-reading at most every
    0.5 s in case one is missed. Every wait is bounded."""

    def __init__(self, conn: asyncpg.Connection, schema: str = "pgcue") -> None:
        self.conn = conn
        self.schema = schema
        self.changed = asyncio.Event()
        self.notifications: list[tuple[str, str]] = []

    def _on(self, _c: Any, _pid: int, chan: str, payload: str) -> None:
        self.notifications.append((chan, payload))
        self.changed.set()

    async def start(self) -> Watcher:
        for name in ("events", "wake", "cancel"):
            await self.conn.add_listener(f"{self.schema}_{name}", self._on)
        return self

    async def until(self, query: str, *args: Any, timeout: float = 20.0) -> Any:
        """Re-run `query` (a SELECT returning one value) until it is truthy; return it."""
        deadline = time.monotonic() + timeout
        while True:
            self.changed.clear()
            value = await self.conn.fetchval(query, *args)
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for: {query} {args}")
            try:
                await asyncio.wait_for(self.changed.wait(), min(0.5, left))
            except TimeoutError:
                pass

    async def states(self, ids: Sequence[uuid.UUID], wanted: set[str] = FINISHED, timeout: float = 20.0) -> None:
        await self.until(
            "SELECT count(*) = $2 FROM pgcue.jobs WHERE id = ANY($1::uuid[]) AND state = ANY($3::text[])",
            list(ids),
            len(ids),
            sorted(wanted),
            timeout=timeout,
        )


@pytest.fixture
async def watcher(settings: Settings) -> AsyncIterator[Watcher]:
    conn = await db.connect(settings)
    try:
        yield await Watcher(conn).start()
    finally:
        await conn.close()


# --- real worker processes ---------------------------------------------------------------


class WorkerProcess:
    """`pgcue worker` in a subprocess; its JSON log lines are collected as they come."""

    def __init__(
        self,
        settings: Settings,
        types: list[str],
        trace_dir: Path,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
        command: str = "worker",
    ) -> None:
        argv = [sys.executable, "-m", "pgcue.cli", command, "--import", "tests.helpers.jobtypes", *extra]
        for t in types:
            argv += ["--type", t]
        environ = dict(os.environ)
        environ.update(
            {
                "PGCUE_DATABASE_URL": settings.database_url,
                "PGCUE_SCHEMA": settings.schema,
                "PGCUE_POLL_INTERVAL": str(settings.poll_interval),
                "PGCUE_RESCUE_INTERVAL": str(settings.rescue_interval),
                "PGCUE_REPORT_INTERVAL": str(settings.report_interval),
                "PGCUE_RETRY_BASE_SECONDS": str(settings.retry_base_seconds),
                "PGCUE_SHUTDOWN_GRACE": str(settings.shutdown_grace),
                "PGCUE_STATEMENT_CACHE_SIZE": str(settings.statement_cache_size),
                "PGCUE_DIRECT_DATABASE_URL": settings.direct_database_url,
                "PGCUE_RANDOM_PAGE_COST": str(settings.random_page_cost),
                "PGCUE_LOG_FORMAT": "json",
                "PGCUE_LOG_LEVEL": "info",
                "PGCUE_TEST_TRACE_DIR": str(trace_dir),
            }
        )
        environ.update(env or {})
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=environ, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._cond = threading.Condition()
        self.eof = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in iter(self.proc.stderr.readline, b""):
            text = line.decode(errors="replace").strip()
            with self._cond:
                self.raw.append(text)
                try:
                    self.lines.append(json.loads(text))
                except ValueError:
                    pass
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def wait_log(self, event: str, timeout: float = 20.0) -> dict[str, Any]:
        """Block until the worker logs `event`; bounded."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if line.get("event") == event:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    raise AssertionError(
                        f"worker did not log {event!r} within {timeout}s; log:\n" + "\n".join(self.raw[-30:])
                    )
                self._cond.wait(min(left, 0.5))

    async def started(self, timeout: float = 20.0) -> WorkerProcess:
        await asyncio.to_thread(self.wait_log, "worker started", timeout)
        return self

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float = 30.0) -> int:
        return await asyncio.to_thread(self.proc.wait, timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def trace_dir(tmp_path: Path) -> Path:
    d = tmp_path / "trace"
    d.mkdir()
    return d


@pytest.fixture
def spawn_worker(settings: Settings, trace_dir: Path) -> Iterator[Any]:
    procs: list[WorkerProcess] = []

    def spawn(
        *types: str,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
        settings_override: Settings | None = None,
        command: str = "worker",
    ) -> WorkerProcess:
        proc = WorkerProcess(settings_override or settings, list(types), trace_dir, extra, env, command)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.proc.poll() is None:
            proc.proc.terminate()
            try:
                proc.proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def read_trace(trace_dir: Path) -> list[tuple[int, str, str, int]]:
    """(pid, event, job id, attempt) for every line every worker traced."""
    out = []
    for path in trace_dir.glob("*.log"):
        pid = int(path.stem)
        for line in path.read_text().splitlines():
            event, job_id, attempt = line.split()
            out.append((pid, event, job_id, int(attempt)))
    return out
