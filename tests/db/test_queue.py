"""Queue operations against a real PostgreSQL, in process."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import psycopg
import pytest

from pgcue.core import db
from pgcue.core.config import Settings
from pgcue.core.errors import InvalidJob, InvalidTransition, JobNotFound, UnknownJobType
from pgcue.core.models import Completion, Failure, NewJob
from pgcue.core.queue import Queue, enqueue_many_sync, retry_delay
from tests.conftest import Watcher, make_settings

W = "test-worker"


def job(type: str = "echo", **kw: object) -> NewJob:
    return NewJob(type=type, channel_id=str(kw.pop("channel_id", "ch-1")), **kw)  # type: ignore[arg-type]


async def events(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[tuple[str, dict]]:
    rows = await pool.fetch("SELECT kind, data FROM pgcue.job_events WHERE job_id = $1 ORDER BY id", job_id)
    return [(r["kind"], r["data"]) for r in rows]


async def test_enqueue_and_get_has_the_documented_shape(queue: Queue) -> None:
    j = await queue.enqueue(job(payload={"text": "hi"}, owner_id="u1"))
    assert j.state == "queued" and j.attempts == 0 and j.max_attempts == 3
    assert j.cancel_requested is False and j.result_path is None and j.error_message is None
    assert j.started_at is None and j.completed_at is None and j.payload == {"text": "hi"}
    assert (await queue.get(j.id)).id == j.id
    with pytest.raises(JobNotFound):
        await queue.get(uuid.uuid4())


async def test_enqueue_records_a_queued_event(queue: Queue, pool: asyncpg.Pool) -> None:
    j = await queue.enqueue(job())
    assert await events(pool, j.id) == [("job:status", {"state": "queued", "attempt": 0, "maxAttempts": 3})]


async def test_idempotency_key_returns_the_same_job(queue: Queue, pool: asyncpg.Pool) -> None:
    first = await queue.enqueue(job(idempotency_key="k1", owner_id="u1", payload={"v": 1}))
    again = await queue.enqueue(job(idempotency_key="k1", owner_id="u1", payload={"v": 2}))
    other_owner = await queue.enqueue(job(idempotency_key="k1", owner_id="u2"))
    assert again.id == first.id and again.payload == {"v": 1}
    assert other_owner.id != first.id
    # Concurrent repeats of one key still make one job.
    ids = await asyncio.gather(*(queue.enqueue(job(idempotency_key="k2")) for _ in range(10)))
    assert len({j.id for j in ids}) == 1
    assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs WHERE idempotency_key = 'k2'") == 1


async def test_bulk_enqueue_of_10000_is_one_round_trip(queue: Queue, pool: asyncpg.Pool) -> None:
    statements: list[str] = []
    async with pool.acquire() as conn:
        await queue.enqueue_many([job()], conn=conn)  # asyncpg introspects the array types once
        conn.add_query_logger(lambda q: statements.append(q.query))
        ids = await queue.enqueue_many([job(payload={"n": i}) for i in range(10_000)], conn=conn)
        await asyncio.sleep(0)  # asyncpg calls query loggers with call_soon: let it run
        assert len(statements) == 1 and "INSERT INTO pgcue.jobs" in statements[0]
    assert len(set(ids)) == 10_000
    assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs WHERE state = 'queued'") == 10_001
    assert await pool.fetchval("SELECT count(*) FROM pgcue.job_events") == 10_001


async def test_notifies_once_per_statement_not_per_row(queue: Queue, watcher: Watcher) -> None:
    await queue.enqueue_many([job("echo") for _ in range(500)] + [job("sleep") for _ in range(500)])
    await watcher.until("SELECT true")  # the notifications arrive before the next read completes
    await asyncio.sleep(0)
    got = sorted(watcher.notifications)
    assert got == [("pgcue_events", ""), ("pgcue_wake", "echo"), ("pgcue_wake", "sleep")]


async def test_idle_claim_notifies_no_one(queue: Queue, watcher: Watcher) -> None:
    assert await queue.claim("echo", 10, W, 30) == []
    await watcher.conn.execute("SELECT pg_notify('pgcue_events', 'marker')")
    await watcher.until("SELECT true")
    assert watcher.notifications == [("pgcue_events", "marker")]


async def test_unknown_type_and_bad_input_write_nothing(queue: Queue, pool: asyncpg.Pool) -> None:
    with pytest.raises(UnknownJobType, match="nope"):
        await queue.enqueue_many([job("echo"), job("nope")])
    with pytest.raises(InvalidJob, match="NUL"):
        await queue.enqueue(job(payload={"t": "a\x00b"}))
    with pytest.raises(InvalidJob, match="priority"):
        await queue.enqueue(job(priority=5000))
    with pytest.raises(InvalidJob, match="channelId"):
        await queue.enqueue(job(channel_id=""))
    assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs") == 0
    assert await pool.fetchval("SELECT count(*) FROM pgcue.job_events") == 0


async def test_enqueue_joins_the_callers_transaction(queue: Queue, pool: asyncpg.Pool, settings: Settings) -> None:
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await queue.enqueue_many([job()], conn=conn)
        await tx.rollback()
    with psycopg.connect(settings.database_url) as pconn:  # psycopg: not autocommit, one transaction
        enqueue_many_sync(pconn, [job(payload={"sync": True})])
        pconn.rollback()
        (kept,) = enqueue_many_sync(pconn, [job(payload={"sync": True}, idempotency_key="s")])
        pconn.commit()
        with pytest.raises(UnknownJobType):
            enqueue_many_sync(pconn, [job("nope")])
        pconn.rollback()
        assert enqueue_many_sync(pconn, [job(idempotency_key="s")]) == [kept]
        pconn.commit()
    rows = await pool.fetch("SELECT id, payload FROM pgcue.jobs")
    assert [(r["id"], r["payload"]) for r in rows] == [(kept, {"sync": True})]


async def test_claim_orders_by_priority_then_run_at_and_respects_delay(queue: Queue) -> None:
    now = datetime.now(UTC)
    low = await queue.enqueue(job(priority=0, run_at=now - timedelta(seconds=30)))
    high = await queue.enqueue(job(priority=10))
    older = await queue.enqueue(job(priority=0, run_at=now - timedelta(seconds=60)))
    later = await queue.enqueue(job(priority=100, run_at=now + timedelta(hours=1)))
    claimed = await queue.claim("echo", 10, W, 30)
    assert [c.id for c in claimed] == [high.id, older.id, low.id]
    assert later.id not in {c.id for c in claimed}
    got = await queue.get(high.id)
    assert got.state == "running" and got.attempts == 1 and got.locked_by == W
    assert got.lease_expires_at is not None and got.started_at is not None


async def test_concurrent_claims_never_share_a_job(queue: Queue) -> None:
    await queue.enqueue_many([job() for _ in range(300)])
    batches = await asyncio.gather(*(queue.claim("echo", 40, f"w{i}", 30) for i in range(10)))
    ids = [c.id for batch in batches for c in batch]
    assert len(ids) == len(set(ids)) == 300


async def test_complete_is_fenced_by_the_claims_fence(queue: Queue, pool: asyncpg.Pool) -> None:
    j = await queue.enqueue(job())
    (c,) = await queue.claim("echo", 1, W, 30)
    assert await queue.complete([Completion(c.id, c.fence + 1, {"x": 1})]) == {}
    assert await queue.complete([Completion(c.id, c.fence, {"x": 1}, "/out.mp4")]) == {c.id: "completed"}
    assert await queue.complete([Completion(c.id, c.fence, {"x": 2})]) == {}  # recorded once
    done = await queue.get(j.id)
    assert done.state == "completed" and done.result == {"x": 1} and done.result_path == "/out.mp4"
    assert done.progress == 100 and done.completed_at is not None and done.duration_ms is not None
    assert [e[1]["state"] for e in await events(pool, j.id)] == ["queued", "running", "completed"]


async def test_failures_retry_with_backoff_then_fail_keeping_every_error(queue: Queue) -> None:
    j = await queue.enqueue(job(max_attempts=2))
    (c,) = await queue.claim("echo", 1, W, 30)
    assert await queue.fail([Failure(c.id, c.fence, "boom 1", retry_in=3600)]) == {c.id: "queued"}
    retried = await queue.get(j.id)
    assert retried.run_at > datetime.now(UTC) + timedelta(minutes=59)
    assert await queue.claim("echo", 1, W, 30) == []  # not before its backoff
    await queue.pool.execute("UPDATE pgcue.jobs SET run_at = now() WHERE id = $1", j.id)
    (c,) = await queue.claim("echo", 1, W, 30)
    assert c.attempts == 2
    assert await queue.fail([Failure(c.id, c.fence, "boom 2", retry_in=0)]) == {c.id: "failed"}
    failed = await queue.get(j.id)
    assert failed.error_message == "boom 2" and failed.completed_at is not None
    assert [(e["attempt"], e["error"]) for e in failed.errors] == [(1, "boom 1"), (2, "boom 2")]


def test_retry_delay_grows_exponentially_with_jitter() -> None:
    delays = [retry_delay(a, 2.0, 3600) for a in (1, 2, 3, 4)]
    for attempt, d in zip((1, 2, 3, 4), delays, strict=True):
        assert 0.75 * 2 * 2 ** (attempt - 1) <= d <= 1.25 * 2 * 2 ** (attempt - 1)
    assert retry_delay(30, 2.0, 60) <= 75


async def test_permanent_error_does_not_retry(queue: Queue) -> None:
    j = await queue.enqueue(job())
    (c,) = await queue.claim("echo", 1, W, 30)
    assert await queue.fail([Failure(c.id, c.fence, "bad input", "permanent")]) == {c.id: "failed"}
    assert (await queue.get(j.id)).attempts == 1


async def test_cancel_queued_running_and_finished(queue: Queue, watcher: Watcher) -> None:
    queued = await queue.enqueue(job())
    cancelled = await queue.cancel(queued.id)
    assert cancelled.state == "cancelled" and cancelled.cancel_requested and cancelled.completed_at
    assert cancelled.error_message == "Job cancelled by user request"
    assert await queue.claim("echo", 5, W, 30) == []

    running = await queue.enqueue(job())
    (c,) = await queue.claim("echo", 1, W, 30)
    asked = await queue.cancel(running.id)
    assert asked.state == "running" and asked.cancel_requested
    await watcher.until("SELECT true")
    assert ("pgcue_cancel", str(running.id)) in watcher.notifications
    # Even if the handler then finishes, a cancelled job never completes.
    assert await queue.complete([Completion(c.id, c.fence, {"late": True})]) == {c.id: "cancelled"}
    final = await queue.get(running.id)
    assert final.state == "cancelled" and final.result is None
    with pytest.raises(InvalidTransition, match="it is cancelled"):
        await queue.cancel(running.id)
    with pytest.raises(JobNotFound):
        await queue.cancel(uuid.uuid4())


async def test_retry_by_hand_and_delete(queue: Queue, pool: asyncpg.Pool) -> None:
    j = await queue.enqueue(job(max_attempts=1))
    with pytest.raises(InvalidTransition):
        await queue.retry(j.id)
    with pytest.raises(InvalidTransition):
        await queue.delete(j.id)
    (c,) = await queue.claim("echo", 1, W, 30)
    await queue.fail([Failure(c.id, c.fence, "nope")])
    again = await queue.retry(j.id)
    assert again.state == "queued" and again.attempts == 0 and again.error_message is None
    assert len(again.errors) == 1  # history kept
    (c,) = await queue.claim("echo", 1, W, 30)
    await queue.complete([Completion(c.id, c.fence)])
    await queue.delete(j.id)
    with pytest.raises(JobNotFound):
        await queue.get(j.id)
    assert await pool.fetchval("SELECT count(*) FROM pgcue.job_events WHERE job_id = $1", j.id) == 0


async def test_clear_finished_keeps_unfinished(queue: Queue) -> None:
    a, b = await queue.enqueue_many([job(), job()])
    await queue.enqueue(job(channel_id="other"))
    await queue.cancel(a)
    assert await queue.clear_finished("ch-1") == 1
    assert (await queue.get(b)).state == "queued"


async def test_heartbeat_extends_held_leases_and_reports_lost_ones(queue: Queue, pool: asyncpg.Pool) -> None:
    await queue.enqueue_many([job(), job()])
    a, b = await queue.claim("echo", 2, W, 30)
    await queue.cancel(a.id)
    await pool.execute("UPDATE pgcue.jobs SET attempts = attempts WHERE id = $1", b.id)
    answer = await queue.heartbeat(W, [(a.id, a.fence, 120), (b.id, b.fence + 1, 120)])
    assert answer == {a.id: True}  # b's attempt does not match: lost
    lease = await pool.fetchval("SELECT lease_expires_at - now() FROM pgcue.jobs WHERE id = $1", a.id)
    assert lease > timedelta(seconds=100)


async def test_rescue_requeues_expired_leases_and_fails_spent_ones(queue: Queue, pool: asyncpg.Pool) -> None:
    fresh, spent = await queue.enqueue_many([job(), job(max_attempts=1)])
    await queue.claim("echo", 2, W, 30)
    await pool.execute("UPDATE pgcue.jobs SET lease_expires_at = now() - interval '1 second'")
    rescued = {r.id: r.state for r in await queue.upkeep.rescue()}
    assert rescued == {fresh: "queued", spent: "failed"}
    back = await queue.get(fresh)
    assert back.locked_by is None and back.errors[0]["kind"] == "rescued"
    assert "lease expired" in (await queue.get(spent)).error_message


async def test_release_gives_back_without_charging_an_attempt(queue: Queue) -> None:
    j = await queue.enqueue(job())
    (c,) = await queue.claim("echo", 1, W, 30)
    assert await queue.release([(c.id, c.fence)]) == {c.id: "queued"}
    back = await queue.get(j.id)
    assert back.state == "queued" and back.attempts == 0


async def test_prune_deletes_only_old_finished_jobs(queue: Queue, pool: asyncpg.Pool) -> None:
    old, recent, waiting = await queue.enqueue_many([job(), job(), job()])
    await queue.cancel(old)
    await queue.cancel(recent)
    await pool.execute("UPDATE pgcue.jobs SET completed_at = now() - interval '2 days' WHERE id = $1", old)
    assert await queue.upkeep.prune(retention_seconds=86400, batch=1) == 1
    remaining = {r["id"] for r in await pool.fetch("SELECT id FROM pgcue.jobs")}
    assert remaining == {recent, waiting}


async def test_report_writes_progress_stage_and_output_events(queue: Queue, pool: asyncpg.Pool) -> None:
    from pgcue.core.models import ProgressReport

    j = await queue.enqueue(job())
    (c,) = await queue.claim("echo", 1, W, 30)
    held = await queue.report_progress(
        [
            ProgressReport(
                c.id,
                c.fence,
                40,
                "rendering",
                "draft",
                (("stage:updated", b'{"stage":"draft"}'), ("job:output", b'{"text":"hello"}')),
            ),
            ProgressReport(uuid.uuid4(), 1, 10),
        ]
    )
    assert held == {c.id}
    got = await queue.get(j.id)
    assert (got.progress, got.progress_message, got.stage) == (40, "rendering", "draft")
    assert [k for k, _ in await events(pool, j.id)] == ["job:status", "job:status", "stage:updated", "job:output"]


async def test_impossible_states_are_rejected_by_the_schema(queue: Queue, pool: asyncpg.Pool) -> None:
    j = await queue.enqueue(job())
    bad = [
        "UPDATE pgcue.jobs SET state = 'completed' WHERE id = $1",  # no completed_at
        "UPDATE pgcue.jobs SET state = 'bogus' WHERE id = $1",
        "UPDATE pgcue.jobs SET attempts = 4 WHERE id = $1",  # > max_attempts
        "UPDATE pgcue.jobs SET state = 'running' WHERE id = $1",  # no lease
        "UPDATE pgcue.jobs SET progress = 101 WHERE id = $1",
    ]
    for statement in bad:
        with pytest.raises(asyncpg.CheckViolationError):
            await pool.execute(statement, j.id)


async def test_a_custom_schema_is_fully_separate(database: str) -> None:
    from pgcue.core import migrate

    settings = make_settings(database, schema="studio_q")
    with db.connect_sync(settings) as conn:
        assert [m.version for m in migrate.migrate(conn, "studio_q")] == [m.version for m in migrate.available()]
    pool = await db.create_pool(settings)
    try:
        q = Queue(pool, "studio_q")
        await q.register_types([__import__("pgcue.core.models", fromlist=["JobType"]).JobType(name="echo")])
        j = await q.enqueue(job())
        assert (await q.get(j.id)).state == "queued"
        assert await pool.fetchval("SELECT count(*) FROM studio_q.jobs") == 1
        assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs") == 0
    finally:
        await pool.close()


async def test_a_keyless_bulk_call_stores_what_the_keyed_statement_stores(
    queue: Queue, pool: asyncpg.Pool, watcher: Watcher
) -> None:
    # Without keys a bulk call takes the statement without ON CONFLICT (enqueue_jobs_keyless):
    # the rows, their events and the wake-ups must be the keyed statement's.
    later = datetime.now(UTC) + timedelta(hours=1)
    plain = await queue.enqueue_many([job(owner_id="u1", priority=3, max_attempts=5), job("sleep", run_at=later)])
    keyed = await queue.enqueue_many([job(owner_id="u1", priority=3, max_attempts=5, idempotency_key="k")])
    await watcher.until("SELECT true")
    await asyncio.sleep(0)
    rows = {
        r["id"]: r
        for r in await pool.fetch("SELECT id, type, owner_id, priority, max_attempts, run_at, state FROM pgcue.jobs")
    }
    a, b = rows[plain[0]], rows[keyed[0]]
    assert (a["owner_id"], a["priority"], a["max_attempts"], a["state"]) == ("u1", 3, 5, "queued")
    assert (b["owner_id"], b["priority"], b["max_attempts"], b["state"]) == ("u1", 3, 5, "queued")
    assert rows[plain[1]]["run_at"] == later
    assert await events(pool, plain[0]) == await events(pool, keyed[0])
    assert await events(pool, plain[1]) == [("job:status", {"state": "queued", "attempt": 0, "maxAttempts": 3})]
    # The delayed `sleep` job wakes no one; each of the two statements wakes `echo` once and
    # says once that the event log grew.
    assert sorted(watcher.notifications) == [("pgcue_events", "")] * 2 + [("pgcue_wake", "echo")] * 2
    # A batch with one key goes the keyed way: the taken key answers with its job, the rest are new.
    again = await queue.enqueue_many([job(owner_id="u1", idempotency_key="k"), job()])
    assert again[0] == keyed[0] and again[1] not in rows
