"""Scheduling policies with real worker processes: fairness across channels, fleet-wide
and per-channel limits, rate limits, unique jobs, cron, pause and resume."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from pgcue.core import db
from pgcue.core.config import Settings
from pgcue.core.errors import UniqueConflict
from pgcue.core.models import NewJob, Schedule
from pgcue.core.queue import Queue
from tests.conftest import Watcher, run_cli


def many(type: str, channel: str, n: int, **payload: Any) -> list[NewJob]:
    return [NewJob(type=type, channel_id=channel, payload={"n": i, **payload}) for i in range(n)]


async def sample_running(pool: asyncpg.Pool, sql: str, until: asyncio.Task[Any]) -> list[int]:
    """Read `sql` (a running count) as often as we can until `until` is done."""
    samples = []
    while not until.done():
        samples.append(await pool.fetchval(sql))
        await asyncio.sleep(0.005)
    return samples


async def test_a_busy_channel_does_not_starve_a_quiet_one(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher
) -> None:
    await queue.enqueue_many(many("t-count", "busy", 10_000))
    quiet = await queue.enqueue_many(many("t-count", "quiet", 10))  # enqueued last
    workers = [spawn_worker("t-count") for _ in range(2)]
    await asyncio.gather(*(w.started() for w in workers))
    await watcher.states(quiet, {"completed"}, timeout=30)
    # How many jobs had been claimed before the last of the quiet channel's?
    position = await pool.fetchval(
        """SELECT count(*) FROM pgcue.job_events
           WHERE kind = 'job:status' AND data->>'state' = 'running'
             AND id < (SELECT max(id) FROM pgcue.job_events
                       WHERE job_id = ANY($1::uuid[]) AND data->>'state' = 'running')""",
        quiet,
    )
    assert position < 30, f"the quiet channel's last job started after {position} others"


async def test_a_fleet_wide_limit_is_never_exceeded_across_three_processes(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher
) -> None:
    workers = [spawn_worker("t-limited") for _ in range(3)]  # 5 slots each: 15 > 2
    await asyncio.gather(*(w.started() for w in workers))
    ids = await queue.enqueue_many(many("t-limited", "ch", 24, sleep=0.1))
    done = asyncio.create_task(watcher.states(ids, {"completed"}, timeout=60))
    samples = await sample_running(
        pool, "SELECT count(*) FROM pgcue.jobs WHERE state = 'running' AND type = 't-limited'", done
    )
    await done
    assert max(samples) == 2, f"max running {max(samples)} over {len(samples)} samples"


async def test_a_per_channel_limit_holds_while_channels_run_side_by_side(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher
) -> None:
    workers = [spawn_worker("t-chanlimited") for _ in range(2)]
    await asyncio.gather(*(w.started() for w in workers))
    ids = await queue.enqueue_many(many("t-chanlimited", "a", 8, sleep=0.1) + many("t-chanlimited", "b", 8, sleep=0.1))
    done = asyncio.create_task(watcher.states(ids, {"completed"}, timeout=60))
    samples = await sample_running(
        pool,
        """SELECT coalesce(max(n), 0) * 100 + coalesce(sum(n), 0) FROM (
               SELECT count(*) AS n FROM pgcue.jobs WHERE state = 'running' AND type = 't-chanlimited'
               GROUP BY channel_id) c""",
        done,
    )
    await done
    per_channel, total = max(s // 100 for s in samples), max(s % 100 for s in samples)
    assert per_channel == 1 and total == 2, (per_channel, total)


async def test_a_rate_limit_holds_within_its_window(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher
) -> None:
    workers = [spawn_worker("t-rated") for _ in range(2)]
    await asyncio.gather(*(w.started() for w in workers))
    ids = await queue.enqueue_many(many("t-rated", "ch", 12, sleep=0.0))
    await watcher.states(ids, {"completed"}, timeout=30)
    starts = sorted(
        r["started_at"] for r in await pool.fetch("SELECT started_at FROM pgcue.jobs WHERE id = ANY($1::uuid[])", ids)
    )
    window = timedelta(seconds=1)
    worst = max(sum(1 for s in starts if t <= s < t + window) for t in starts)
    assert worst <= 4, f"{worst} starts within one second (limit 4)"
    assert starts[-1] - starts[0] >= timedelta(seconds=2)  # 12 at 4 per second


async def test_unique_jobs_follow_their_conflict_policy(queue: Queue) -> None:
    first = await queue.enqueue(NewJob(type="echo", channel_id="c", unique_key="render:ep1", payload={"v": 1}))
    again = await queue.enqueue(NewJob(type="echo", channel_id="c", unique_key="render:ep1", payload={"v": 2}))
    assert again.id == first.id and again.payload == {"v": 1}
    replaced = await queue.enqueue(
        NewJob(type="echo", channel_id="c", unique_key="render:ep1", payload={"v": 3}, on_conflict="replace")
    )
    assert replaced.id == first.id and replaced.payload == {"v": 3}
    with pytest.raises(UniqueConflict, match="already queued or running"):
        await queue.enqueue(NewJob(type="echo", channel_id="c", unique_key="render:ep1", on_conflict="reject"))
    other_type = await queue.enqueue(NewJob(type="sleep", channel_id="c", unique_key="render:ep1"))
    assert other_type.id != first.id
    # Once the first has finished, the key is free again.
    await queue.cancel(first.id)
    fresh = await queue.enqueue(NewJob(type="echo", channel_id="c", unique_key="render:ep1", on_conflict="reject"))
    assert fresh.id != first.id
    # In one bulk call, repeats of a key resolve to one job.
    ids = await queue.enqueue_many([NewJob(type="echo", channel_id="c", unique_key="bulk") for _ in range(5)])
    assert len(set(ids)) == 1


async def test_cron_enqueues_once_per_tick_with_three_schedulers(settings: Settings, queue: Queue) -> None:
    await queue.upkeep.register_schedules(
        [Schedule(name="every-second", cron="* * * * * *", type="echo", channel_id="c")]
    )
    pools = [await db.create_pool(settings, min_size=1, max_size=2) for _ in range(3)]
    try:
        schedulers = [Queue(p) for p in pools]
        deadline = time.monotonic() + 3.5

        async def scheduler(q: Queue) -> None:
            while time.monotonic() < deadline:
                await q.upkeep.enqueue_due_schedules()
                await asyncio.sleep(0.05)

        await asyncio.gather(*(scheduler(q) for q in schedulers))
    finally:
        for p in pools:
            await p.close()
    keys = [
        r["idempotency_key"]
        for r in await queue.pool.fetch("SELECT idempotency_key FROM pgcue.jobs ORDER BY idempotency_key")
    ]
    ticks = [
        datetime.fromisoformat(k.rsplit(":", 3)[0].split(":", 2)[2] + ":" + ":".join(k.rsplit(":", 3)[1:]))
        for k in keys
    ]
    assert len(keys) == len(set(keys)) >= 3
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(ticks)), ticks


async def test_no_burst_of_catch_up_runs_after_downtime_unless_asked(queue: Queue, pool: asyncpg.Pool) -> None:
    await queue.upkeep.register_schedules(
        [
            Schedule(name="plain", cron="* * * * * *", type="echo", channel_id="c"),
            Schedule(name="catch-up", cron="* * * * * *", type="sleep", channel_id="c", catch_up=True),
        ]
    )
    await pool.execute("UPDATE pgcue.schedules SET next_run_at = now() - interval '1 hour' WHERE name = 'plain'")
    await pool.execute(
        "UPDATE pgcue.schedules SET next_run_at = date_trunc('second', now()) - interval '5 seconds' "
        "WHERE name = 'catch-up'"
    )
    before = await pool.fetchval("SELECT clock_timestamp()")
    await queue.upkeep.enqueue_due_schedules()
    counts = {r["type"]: r["n"] for r in await pool.fetch("SELECT type, count(*) AS n FROM pgcue.jobs GROUP BY type")}
    assert counts["echo"] == 1  # an hour missed, one run
    assert 5 <= counts["sleep"] <= 7  # every missed tick
    # Both moved past every missed tick, to one after the call. (Not "after now()": a
    # per-second schedule's next tick may already be behind a later read on a busy machine.)
    assert await pool.fetchval("SELECT bool_and(next_run_at > $1) FROM pgcue.schedules", before)


async def test_pause_stops_claims_and_resume_restarts_them(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher, settings: Settings
) -> None:
    await spawn_worker("t-count").started()
    result = run_cli("pause", "--type", "t-count", dsn=settings.database_url)
    assert result.returncode == 0 and result.stdout.strip() == "job type t-count paused"
    (held,) = await queue.enqueue_many(many("t-count", "ch", 1))
    # Nothing to await for a claim that must not happen: watch for two poll intervals.
    await asyncio.sleep(2 * settings.poll_interval)
    assert (await queue.get(held)).state == "queued"
    await queue.fleet.set_type_paused("t-count", False)
    await watcher.states([held], {"completed"}, timeout=10)

    # A channel, paused from psql's function.
    await pool.execute("SELECT pgcue.set_channel_paused('quiet', true, 'maintenance')")
    (paused,) = await queue.enqueue_many(many("t-count", "quiet", 1))
    (other,) = await queue.enqueue_many(many("t-count", "loud", 1))
    await watcher.states([other], {"completed"}, timeout=10)
    assert (await queue.get(paused)).state == "queued"
    assert run_cli("resume", "--channel", "quiet", dsn=settings.database_url).returncode == 0
    await watcher.states([paused], {"completed"}, timeout=10)
    bad = run_cli("pause", "--type", "no-such-type", dsn=settings.database_url)
    assert bad.returncode == 1 and "unknown job type" in bad.stderr


async def test_policies_show_in_psql(pool: asyncpg.Pool, queue: Queue) -> None:
    await queue.enqueue_many(many("t-limited", "ch", 3))
    await queue.fleet.set_type_paused("t-rated", True)
    rows = {r["type"]: r for r in await pool.fetch("SELECT * FROM pgcue.type_policies")}
    assert rows["t-limited"]["global_concurrency"] == 2 and rows["t-limited"]["queued"] == 3
    assert rows["t-rated"]["paused"] and rows["t-rated"]["rate_limit"] == 4
    assert rows["t-chanlimited"]["channel_concurrency"] == 1


async def test_channels_holding_only_delayed_jobs_do_not_hide_runnable_ones(queue: Queue) -> None:
    later = datetime.now().astimezone() + timedelta(hours=1)
    # 30 channels whose only jobs are delayed sort before the one channel with runnable work.
    await queue.enqueue_many([NewJob(type="echo", channel_id=f"a-{i:02d}", run_at=later) for i in range(30)])
    (ready,) = await queue.enqueue_many([NewJob(type="echo", channel_id="z-ready")])
    cursor, seen = "", []
    for _ in range(5):  # a claim of 10 visits at most 10 channels; the cursor moves on
        claimed = await queue.claim("echo", 10, "w", 30, cursor=cursor)
        seen += [c.id for c in claimed]
        cursor = claimed.next_cursor
        if seen:
            break
    assert seen == [ready]


async def test_policies_show_in_stats_and_metrics(api: Any, queue: Queue) -> None:
    await queue.fleet.set_type_paused("t-rated", True)
    await queue.fleet.set_channel_paused("a1", True)
    async with api.client("alice") as c:
        stats = (await c.get("/api/stats")).json()
        metrics = (await c.get("/metrics")).text
    policies = {p["type"]: p for p in stats["policies"]}
    assert policies["t-limited"]["globalConcurrency"] == 2
    assert policies["t-chanlimited"]["channelConcurrency"] == 1
    assert policies["t-rated"]["paused"] and policies["t-rated"]["rateLimit"] == 4
    assert stats["pausedChannels"] == ["a1"]
    assert 'pgcue_job_type_paused{type="t-rated"} 1.0' in metrics
    assert 'pgcue_job_type_limit{limit="global",type="t-limited"} 2.0' in metrics
    assert "pgcue_paused_channels 1.0" in metrics
