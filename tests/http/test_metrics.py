"""Prometheus metrics in process: the database gauges after a known mix of jobs, their
cache, the vacuum-horizon gauges, and the per-process counters."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import asyncpg
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pgcue.api import metrics
from pgcue.core import db
from pgcue.core.config import Settings
from pgcue.core.models import Failure, NewJob
from pgcue.core.queue import Queue
from pgcue.workers.runtime.metrics import WorkerCollector


def samples(collector: metrics.DatabaseCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(name, sorted labels): value} as Prometheus would read it from the exposition text."""
    text = generate_latest(metrics.exposition_registry(collector)).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def jobs(out: dict, type: str, state: str) -> float:
    return out[("pgcue_jobs", (("state", state), ("type", type)))]


async def test_database_gauges_after_a_known_mix(queue: Queue, pool: asyncpg.Pool) -> None:
    minute_ago = datetime.now(UTC) - timedelta(seconds=60)
    await queue.enqueue_many([NewJob(type="tts", payload={"text": "hi"}, channel_id="c", run_at=minute_ago)])
    await queue.enqueue_many([NewJob(type="tts", payload={"text": "hi"}, channel_id="c") for _ in range(2)])
    await queue.enqueue_many(
        [NewJob(type="tts", payload={"text": "hi"}, channel_id="c", run_at=datetime.now(UTC) + timedelta(hours=1))]
    )
    await queue.enqueue_many(
        [NewJob(type="render", payload={"scenes": [{"color": "#000000"}]}, channel_id="c") for _ in range(2)]
    )
    claimed = await queue.claim("render", 2, "w", 30)
    await queue.fail([Failure(c.id, c.fence, "ffmpeg exited 1", "permanent") for c in claimed])
    await queue.enqueue(NewJob(type="echo", channel_id="c"))
    await queue.claim("echo", 1, "w", 30)

    collector = metrics.DatabaseCollector(ttl=60)
    await collector.refresh(queue)
    out = samples(collector)

    assert out[("pgcue_database_up", ())] == 1
    assert jobs(out, "tts", "queued") == 4  # 3 runnable + 1 scheduled for later
    assert jobs(out, "render", "failed") == 2
    assert jobs(out, "echo", "running") == 1
    nonzero = {key for key, value in out.items() if key[0] == "pgcue_jobs" and value}
    assert nonzero == {
        ("pgcue_jobs", (("state", "queued"), ("type", "tts"))),
        ("pgcue_jobs", (("state", "failed"), ("type", "render"))),
        ("pgcue_jobs", (("state", "running"), ("type", "echo"))),
    }
    # Every registered type × state is exported, at 0 when empty, so alerts never see a gap.
    types = {row["name"] for row in await pool.fetch("SELECT name FROM pgcue.job_types")}
    assert {dict(k[1])["type"] for k in out if k[0] == "pgcue_jobs"} == types
    assert sum(1 for k in out if k[0] == "pgcue_jobs") == 5 * len(types)
    # The oldest runnable tts job is the one due a minute ago; the scheduled one does not count.
    age = out[("pgcue_oldest_runnable_job_age_seconds", (("type", "tts"),))]
    assert 59 <= age < 75
    assert out[("pgcue_oldest_runnable_job_age_seconds", (("type", "render"),))] == 0

    # Cached: a second scrape within the ttl does not query again.
    await queue.enqueue(NewJob(type="tts", payload={"text": "hi"}, channel_id="c"))
    await collector.refresh(queue)
    assert jobs(samples(collector), "tts", "queued") == 4
    collector.ttl = 0
    await collector.refresh(queue)
    assert jobs(samples(collector), "tts", "queued") == 5


async def test_a_long_transaction_shows_in_the_vacuum_horizon_gauges(queue: Queue, settings: Settings) -> None:
    collector = metrics.DatabaseCollector(ttl=0)
    await collector.refresh(queue)
    assert samples(collector)[("pgcue_database_oldest_transaction_seconds", ())] < 1
    holder = await db.connect(settings)
    try:
        tx = holder.transaction(isolation="repeatable_read")
        await tx.start()
        await holder.fetchval("SELECT count(*) FROM pgcue.jobs")  # takes the snapshot
        await asyncio.sleep(1.2)
        await collector.refresh(queue)
        out = samples(collector)
        assert out[("pgcue_database_oldest_transaction_seconds", ())] >= 1.0
        assert out[("pgcue_database_xmin_age_xids", ())] >= 0
        await tx.rollback()
    finally:
        await holder.close()


async def test_database_down_is_reported_not_raised(settings: Settings) -> None:
    pool = await db.create_pool(settings, min_size=1, max_size=1)
    queue = Queue(pool)
    await pool.close()
    collector = metrics.DatabaseCollector(ttl=0)
    await collector.refresh(queue)
    out = samples(collector)
    assert out[("pgcue_database_up", ())] == 0
    assert not any(k[0] == "pgcue_jobs" for k in out)


async def test_enqueue_counts_inserted_jobs_only(queue: Queue) -> None:
    def count() -> float:
        return REGISTRY.get_sample_value("pgcue_jobs_enqueued_total", {"type": "resource-download"}) or 0.0

    before = count()
    await queue.enqueue_many([NewJob(type="resource-download", channel_id="c", idempotency_key="k")])
    await queue.enqueue_many([NewJob(type="resource-download", channel_id="c", idempotency_key="k")])
    await queue.enqueue_many([NewJob(type="resource-download", channel_id="c") for _ in range(3)])
    assert count() - before == 4  # the repeated key inserted nothing


def test_worker_collector_reports_running_free_and_capacity() -> None:
    # render: one handler running and 3 jobs claimed ahead waiting for its one slot.
    state = SimpleNamespace(
        limits={"tts": 2, "render": 1}, busy={"tts": 1, "render": 4}, in_handler={"tts": 1, "render": 1}
    )
    text = generate_latest(metrics.exposition_registry(WorkerCollector(state))).decode()
    got = {(s.name, s.labels["type"]): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert got == {
        ("pgcue_worker_running_jobs", "render"): 1,
        ("pgcue_worker_running_jobs", "tts"): 1,
        ("pgcue_worker_free_slots", "render"): 0,
        ("pgcue_worker_free_slots", "tts"): 1,
        ("pgcue_worker_concurrency_slots", "render"): 1,
        ("pgcue_worker_concurrency_slots", "tts"): 2,
        ("pgcue_worker_claimed_ahead_jobs", "render"): 3,
        ("pgcue_worker_claimed_ahead_jobs", "tts"): 0,
    }
