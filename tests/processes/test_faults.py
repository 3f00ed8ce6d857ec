"""Faults injected for real: paused workers, killed connections, a restarted PostgreSQL,
a flood of progress reports."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from pgcue.cli import devdb
from pgcue.core import db, migrate
from pgcue.core.config import Settings
from pgcue.core.models import NewJob, ProgressReport
from pgcue.core.queue import Queue
from pgcue.workers.runtime import registry
from tests.conftest import Watcher, make_settings, read_trace


def jobs(type: str, n: int = 1, **payload: Any) -> list[NewJob]:
    return [NewJob(type=type, channel_id="ch", payload={"n": i, **payload}) for i in range(n)]


async def test_a_worker_paused_past_its_lease_changes_nothing_when_it_resumes(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher, trace_dir: Path
) -> None:
    zombie = await spawn_worker("t-slow", extra=["--no-maintenance"]).started()
    (job_id,) = await queue.enqueue_many(jobs("t-slow", steps=30, step=0.1))
    await watcher.until("SELECT count(*) > 0 FROM pgcue.job_events WHERE job_id = $1 AND kind = 'job:progress'", job_id)
    zombie.signal(signal.SIGSTOP)
    try:
        await spawn_worker("t-slow").started()  # leads maintenance: rescues, then runs attempt 2
        await watcher.states([job_id], {"completed"}, timeout=30)
        finished = await pool.fetchrow("SELECT attempts, updated_at FROM pgcue.jobs WHERE id = $1", job_id)
        events_before = await pool.fetchval("SELECT count(*) FROM pgcue.job_events WHERE job_id = $1", job_id)
    finally:
        zombie.signal(signal.SIGCONT)
    await asyncio.to_thread(zombie.wait_log, "lease lost: stopped without recording anything", 20)
    after = await pool.fetchrow("SELECT attempts, updated_at, state FROM pgcue.jobs WHERE id = $1", job_id)
    assert finished["attempts"] == 2 and after["state"] == "completed"
    assert after["updated_at"] == finished["updated_at"]  # the zombie's late writes changed 0 rows
    assert await pool.fetchval("SELECT count(*) FROM pgcue.job_events WHERE job_id = $1", job_id) == events_before
    ends = [t for t in read_trace(trace_dir) if t[1] == "end"]
    assert [(t[3]) for t in ends] == [2]  # the zombie stopped at its next checkpoint


async def test_killed_connections_recover_and_lose_nothing(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher, trace_dir: Path, settings: Settings
) -> None:
    workers = [spawn_worker("t-count") for _ in range(2)]
    await asyncio.gather(*(w.started() for w in workers))
    first = await queue.enqueue_many(jobs("t-count", 500))
    dbname = settings.database_url.rsplit("/", 1)[1]
    killed = await pool.fetchval(
        """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
           WHERE datname = $1 AND application_name LIKE 'pgcue-worker%'""",
        dbname,
    )
    assert killed >= 4  # each worker's pool, LISTEN and maintenance connections
    second = await queue.enqueue_many(jobs("t-count", 500))
    await watcher.states([*first, *second], {"completed"}, timeout=60)
    completed = await pool.fetchval("SELECT count(*) FROM pgcue.job_events WHERE data->>'state' = 'completed'")
    assert completed == 1000  # each completion recorded once
    # The LISTEN connections came back: a new job is picked up without waiting for a poll.
    assert (
        await pool.fetchval(
            """SELECT count(*) FROM pg_stat_activity WHERE datname = $1
           AND application_name = 'pgcue-worker-listen'""",
            dbname,
        )
        == 2
    )


async def test_a_flood_of_progress_reports_is_coalesced(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher
) -> None:
    await spawn_worker("t-chatty").started()
    watcher.notifications.clear()
    (job_id,) = await queue.enqueue_many(jobs("t-chatty", reports=20_000, rounds=10))
    await watcher.states([job_id], {"completed"})
    notifies = sum(1 for chan, _ in watcher.notifications if chan == "pgcue_events")
    writes = await pool.fetchval(
        "SELECT count(*) FROM pgcue.job_events WHERE job_id = $1 AND kind = 'job:progress'", job_id
    )
    # 40,000 calls; the worker writes once per report interval (0.05 s here).
    assert notifies < 60 and writes < 60, (notifies, writes)
    text = "".join(
        r["t"]
        for r in await pool.fetch(
            "SELECT data->>'text' AS t FROM pgcue.job_events WHERE job_id = $1 AND kind = 'job:output' ORDER BY id",
            job_id,
        )
    )
    assert text.count("token") == 20_000  # coalesced, not dropped
    longest = await pool.fetchval(
        "SELECT max(octet_length(data::text)) FROM pgcue.job_events WHERE job_id = $1", job_id
    )
    assert longest < 8000


async def test_heartbeats_and_progress_are_hot_updates(settings: Settings, queue: Queue) -> None:
    (job_id,) = await queue.enqueue_many(jobs("echo"))
    conn = await db.connect(settings)
    try:
        q = Queue(conn)
        (claimed,) = await q.claim("echo", 1, "w", 60)
        await conn.fetchval("SELECT pg_stat_force_next_flush()")
        before = await conn.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'pgcue.jobs'::regclass"
        )
        for i in range(50):
            await q.heartbeat("w", [(job_id, claimed.fence, 60)])
            await q.report_progress([ProgressReport(job_id, claimed.fence, i, f"step {i}")])
        await conn.fetchval("SELECT pg_stat_force_next_flush()")
        await conn.fetchval("SELECT pg_stat_clear_snapshot()")
        after = await conn.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'pgcue.jobs'::regclass"
        )
    finally:
        await conn.close()
    updates = after["n_tup_upd"] - before["n_tup_upd"]
    hot = after["n_tup_hot_upd"] - before["n_tup_hot_upd"]
    assert updates == 100
    assert hot >= 95, f"only {hot} of {updates} heartbeat/progress updates were HOT"


# --- a private PostgreSQL, so restarting it disturbs no other test ---------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateCluster:
    def __init__(self, root: Path) -> None:
        bindir = devdb._pg_bin()
        if bindir is None:
            pytest.skip("no initdb/pg_ctl on this machine")
        self.bindir = bindir
        self.root = root
        self.port = _free_port()
        self.url = devdb._private_cluster(root, bindir, self.port)
        self._as = ["runuser", "-u", "postgres", "--"] if shutil.which("runuser") else []

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*self._as, str(self.bindir / "pg_ctl"), "-D", str(self.root / "pg"), "-w", "-t", "60", *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=90,
        )

    def stop(self) -> None:
        self.pg_ctl("stop", "-m", "fast")

    def start(self) -> None:
        self.pg_ctl(
            "-l",
            str(self.root / "pg.log"),
            "-o",
            f"-p {self.port} -k {self.root / 'sock'} -c listen_addresses=127.0.0.1",
            "start",
        )


@pytest.fixture
def private_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    root = Path("/tmp") / f"pgcue-cluster-{uuid.uuid4().hex[:8]}"  # reachable by the postgres user
    root.mkdir()
    cluster = PrivateCluster(root)
    try:
        yield cluster
    finally:
        try:
            cluster.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def restartable(private_cluster: PrivateCluster) -> AsyncIterator[tuple[PrivateCluster, Settings]]:
    settings = make_settings(private_cluster.url)
    with psycopg.connect(private_cluster.url, autocommit=True) as conn:
        migrate.migrate(conn)
    registry.load(["tests.helpers.jobtypes"])
    pool = await db.create_pool(settings, min_size=1, max_size=1)
    try:
        await Queue(pool).register_types([s.row() for s in registry.all_types()])
    finally:
        await pool.close()
    yield private_cluster, settings


async def test_postgres_restarted_mid_run_loses_and_duplicates_nothing(
    restartable: tuple[PrivateCluster, Settings], spawn_worker: Any
) -> None:
    cluster, settings = restartable
    workers = [spawn_worker("t-slow", settings_override=settings) for _ in range(2)]
    await asyncio.gather(*(w.started() for w in workers))
    pool = await db.create_pool(settings, min_size=1, max_size=2)
    queue = Queue(pool)
    first = await queue.enqueue_many(jobs("t-slow", 40, steps=5, step=0.1))
    await pool.close()

    cluster.stop()  # mid-run: jobs are running, completions are in flight
    await asyncio.sleep(2)  # the outage itself: workers must ride it out
    cluster.start()

    conn = await db.connect(settings)
    try:
        watcher = await Watcher(conn).start()
        second = await Queue(conn).enqueue_many(jobs("t-slow", 10, steps=2, step=0.05))
        await watcher.states([*first, *second], {"completed"}, timeout=90)
        per_job = await conn.fetch(
            """SELECT job_id, count(*) AS n FROM pgcue.job_events
               WHERE data->>'state' = 'completed' GROUP BY job_id"""
        )
    finally:
        await conn.close()
    assert len(per_job) == 50 and {r["n"] for r in per_job} == {1}
    for w in workers:
        assert w.proc.poll() is None  # rode it out without a restart
