"""The psql views and functions (migrations/0003_inspection.sql), run through the `psql`
binary itself, as an operator would. Cancel and retry from psql must write the same
events and send the same notifications as the API's path (service/queue.py)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from pgcue.core import db, migrate
from pgcue.core.config import Settings
from pgcue.core.models import Completion, Failure, NewJob
from pgcue.core.queue import Queue
from tests.conftest import Watcher, valid_payload

pytestmark = pytest.mark.skipif(shutil.which("psql") is None, reason="the psql client is not installed")


def psql(dsn: str, sql: str, check: bool = True) -> list[list[str]]:
    """Run `sql` in psql (unaligned, tab-separated, no psqlrc); the rows as lists of text."""
    done = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t", "-d", dsn, "-c", sql],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"psql failed ({done.returncode}): {done.stderr}")
    if not check:
        return [[str(done.returncode), done.stderr]]
    return [line.split("\t") for line in done.stdout.splitlines()]


def job(type: str = "echo", **kw: Any) -> NewJob:
    kw.setdefault("payload", valid_payload(type))
    return NewJob(type=type, channel_id=kw.pop("channel_id", "ch-1"), **kw)


async def last_event(pool: asyncpg.Pool, job_id: uuid.UUID) -> tuple[str, dict[str, Any]]:
    row = await pool.fetchrow(
        "SELECT kind, data FROM pgcue.job_events WHERE job_id = $1 ORDER BY id DESC LIMIT 1", job_id
    )
    assert row is not None
    return row["kind"], row["data"]


async def test_views_show_overview_running_stuck_failures_and_history(
    queue: Queue, pool: asyncpg.Pool, database: str
) -> None:
    await queue.fleet.register_worker("w-live", "host-a", 4242, ["echo"], 5)
    minute_ago = datetime.now(UTC) - timedelta(seconds=60)
    await queue.enqueue_many([job("tts", run_at=minute_ago), job("tts"), job("tts")])
    await queue.enqueue(job("tts", run_at=datetime.now(UTC) + timedelta(hours=1)))
    await queue.enqueue_many([job("render"), job("render")])
    for c in await queue.claim("render", 2, "w-live", 30):
        await queue.fail([Failure(c.id, c.fence, f"ffmpeg exited 1 ({c.id})", "permanent")])
    running = await queue.enqueue(job("echo"))
    await queue.claim("echo", 1, "w-live", 30)
    stuck = await queue.enqueue(job("t-slow"))
    await queue.claim("t-slow", 1, "w-dead", 0.05)
    await asyncio.sleep(0.2)

    rows = psql(
        database,
        "SELECT type, runnable, scheduled, running, failed, oldest_runnable_age >= '59 s', workers "
        "FROM pgcue.queue_overview WHERE runnable + scheduled + running + failed > 0 ORDER BY type",
    )
    assert rows == [
        ["echo", "0", "0", "1", "0", "", "1"],
        ["render", "0", "0", "0", "2", "", "0"],
        ["t-slow", "0", "0", "1", "0", "", "0"],
        ["tts", "3", "1", "0", "0", "t", "0"],
    ]

    rows = psql(database, "SELECT id, worker, hostname, pid, lease_left > '20 s', attempt FROM pgcue.running_jobs")
    assert [str(running.id), "w-live", "host-a", "4242", "t", "1"] in rows
    assert len(rows) == 2

    rows = psql(database, "SELECT id, worker, lease_expired_for >= '0', worker_last_seen FROM pgcue.stuck_jobs")
    assert rows == [[str(stuck.id), "w-dead", "t", ""]]

    rows = psql(database, "SELECT type, attempt, kind, error, job_state FROM pgcue.recent_failures")
    assert len(rows) == 2
    assert all(r[0] == "render" and r[1:3] == ["1", "permanent"] and r[4] == "failed" for r in rows)
    assert all(r[3].startswith("ffmpeg exited 1") for r in rows)

    rows = psql(database, f"SELECT kind, state FROM pgcue.job_history('{running.id}')")
    assert rows == [["job:status", "queued"], ["job:status", "running"]]


async def test_cancel_from_psql_is_the_api_path(
    queue: Queue, pool: asyncpg.Pool, database: str, watcher: Watcher
) -> None:
    by_api, by_psql = await queue.enqueue_many([job(), job()])
    await queue.cancel(by_api)
    rows = psql(database, f"SELECT prev_state, state FROM pgcue.cancel_job('{by_psql}')")
    assert rows == [["queued", "cancelled"]]
    api_job, psql_job = await queue.get(by_api), await queue.get(by_psql)
    assert (psql_job.state, psql_job.cancel_requested, psql_job.error_message) == (
        api_job.state,
        api_job.cancel_requested,
        api_job.error_message,
    )
    assert await last_event(pool, by_psql) == await last_event(pool, by_api)

    # A running job: cancel_requested, a `cancel` notification naming it for its worker,
    # an `events` notification for SSE; then the worker's outcome ends it cancelled.
    running = await queue.enqueue(job())
    (claimed,) = await queue.claim("echo", 1, "w", 30)
    watcher.notifications.clear()
    assert psql(database, f"SELECT prev_state, state FROM pgcue.cancel_job('{running.id}')") == [["running", "running"]]
    await watcher.until("SELECT true")
    await watcher.until("SELECT $1::int > 1", len(watcher.notifications), timeout=5)
    assert ("pgcue_cancel", str(running.id)) in watcher.notifications
    assert ("pgcue_events", "") in watcher.notifications
    assert await queue.complete([Completion(claimed.id, claimed.fence, {"late": True})]) == {claimed.id: "cancelled"}

    # Finished: refused (state NULL, the API's 409); unknown: no row (the API's 404).
    assert psql(database, f"SELECT prev_state, state IS NULL FROM pgcue.cancel_job('{running.id}')") == [
        ["cancelled", "t"]
    ]
    assert psql(database, f"SELECT count(*) FROM pgcue.cancel_job('{uuid.uuid4()}')") == [["0"]]


async def test_retry_and_purge_from_psql(queue: Queue, pool: asyncpg.Pool, database: str, watcher: Watcher) -> None:
    by_api, by_psql = await queue.enqueue_many([job("tts", max_attempts=1), job("tts", max_attempts=1)])
    for c in await queue.claim("tts", 2, "w", 30):
        await queue.fail([Failure(c.id, c.fence, "voice model missing")])
    await queue.retry(by_api)
    watcher.notifications.clear()
    assert psql(database, f"SELECT prev_state, state FROM pgcue.retry_job('{by_psql}')") == [["failed", "queued"]]
    await watcher.until("SELECT true")
    assert ("pgcue_wake", "tts") in watcher.notifications  # workers of the type wake at once
    assert await last_event(pool, by_psql) == await last_event(pool, by_api)
    again = await queue.get(by_psql)
    assert (again.state, again.attempts, again.error_message, len(again.errors)) == ("queued", 0, None, 1)
    assert psql(database, f"SELECT prev_state, state IS NULL FROM pgcue.retry_job('{by_psql}')") == [["queued", "t"]]

    # Purge deletes finished jobs only, with their events, optionally by type and state.
    done = await queue.enqueue_many([job("echo"), job("echo"), job("render")])
    for c in await queue.claim("echo", 2, "w", 30):
        await queue.complete([Completion(c.id, c.fence)])
    await queue.cancel(done[2])
    assert psql(database, "SELECT pgcue.purge_jobs('0', 'echo')") == [["2"]]
    assert psql(database, "SELECT pgcue.purge_jobs(older_than => '1 hour')") == [["0"]]
    assert psql(database, "SELECT pgcue.purge_jobs(job_state => 'cancelled')") == [["1"]]
    left = {r["id"] for r in await pool.fetch("SELECT id FROM pgcue.jobs")}
    assert left == {by_api, by_psql}
    assert await pool.fetchval("SELECT count(*) FROM pgcue.job_events WHERE job_id = ANY($1::uuid[])", done) == 0
    code, err = psql(database, "SELECT pgcue.purge_jobs(job_state => 'running')", check=False)[0]
    assert code != "0" and "must be completed, failed or cancelled" in err
    # delete_jobs (the API's DELETE) refuses unfinished jobs the same way.
    assert psql(database, f"SELECT count(*) FROM pgcue.delete_jobs(ARRAY['{by_psql}']::uuid[])") == [["0"]]


async def test_functions_follow_a_custom_schema(database: str) -> None:
    settings = Settings(database_url=database, schema="studio_q")
    with db.connect_sync(settings) as conn:
        migrate.migrate(conn, "studio_q")
    pool = await db.create_pool(settings, min_size=1, max_size=2)
    listener = await db.connect(settings)
    heard: list[tuple[str, str]] = []
    try:
        for name in ("studio_q_events", "studio_q_cancel"):
            await listener.add_listener(name, lambda _c, _p, ch, payload: heard.append((ch, payload)))
        q = Queue(pool, "studio_q")
        from pgcue.core.models import JobType

        await q.register_types([JobType(name="echo")])
        j = await q.enqueue(job())
        await q.claim("echo", 1, "w", 30)
        await q.cancel(j.id)
        for _ in range(50):
            if ("studio_q_cancel", str(j.id)) in heard:
                break
            await asyncio.sleep(0.05)
        assert ("studio_q_cancel", str(j.id)) in heard
        rows = psql(database, f"SELECT kind, state FROM studio_q.job_history('{j.id}')")
        assert rows[-1] == ["job:status", "running"] and len(rows) == 3
        assert psql(database, "SELECT count(*) FROM studio_q.running_jobs") == [["1"]]
        assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs") == 0
    finally:
        await listener.close()
        await pool.close()
