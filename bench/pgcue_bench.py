"""pgcue's own workloads: drain, pickup latency, bulk and single enqueue, the raw-SQL ceiling.

Each run uses a fresh database on the server given, migrated and dropped afterwards.
Workers are real `pgcue worker` processes started before the clock starts; the clock
runs from the enqueue's commit to the last completion (both read from PostgreSQL).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import psycopg
from psycopg import sql as psql

from bench.peers import _peercommon as pc
from pgcue.core import db, migrate
from pgcue.core.config import Settings
from pgcue.core.models import Completion, NewJob
from pgcue.core.queue import Queue
from pgcue.workers.runtime import registry

ROOT = Path(__file__).resolve().parent.parent


def _dsn_for(base: str, name: str) -> str:
    return urlsplit(base)._replace(path=f"/{name}").geturl()


@asynccontextmanager
async def scratch_database(base_dsn: str) -> AsyncIterator[Settings]:
    """A new migrated database with the bench types registered; dropped on exit."""
    name = f"bench_pgcue_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base_dsn, autocommit=True) as admin:
        admin.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(name)))
    settings = Settings(database_url=_dsn_for(base_dsn, name), log_format="json", log_level="warning")
    try:
        with db.connect_sync(settings) as conn:
            migrate.migrate(conn)
        registry.load(["bench.jobtypes"])
        pool = await db.create_pool(settings, min_size=1, max_size=2)
        try:
            await Queue(pool).register_types([s.row() for s in registry.all_types()])
        finally:
            await pool.close()
        yield settings
    finally:
        with psycopg.connect(base_dsn, autocommit=True) as admin:
            admin.execute(psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(name)))


class Workers:
    """`pgcue worker` processes, started and known to be listening before measuring."""

    def __init__(
        self,
        settings: Settings,
        job_type: str,
        count: int,
        concurrency: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        env = dict(
            os.environ,
            PGCUE_DATABASE_URL=settings.database_url,
            PGCUE_LOG_FORMAT="json",
            PGCUE_LOG_LEVEL="info",
            **(env or {}),
        )
        argv = [sys.executable, "-m", "pgcue.cli", "worker", "--import", "bench.jobtypes", "--type", job_type]
        if concurrency:
            argv += ["--concurrency", str(concurrency)]
        self.procs = [
            subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
            for _ in range(count)
        ]

    def wait_started(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            assert proc.stderr is not None
            while time.monotonic() < deadline:
                line = proc.stderr.readline()
                if not line:
                    raise RuntimeError("worker exited before it started")
                if b'"worker started"' in line:
                    break
            else:
                raise TimeoutError("worker did not start")
        # Drain stderr from now on so a chatty worker never blocks on a full pipe.
        for proc in self.procs:
            subprocess.Popen(["cat"], stdin=proc.stderr, stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _wait_all_finished(conn: asyncpg.Connection, total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done = await conn.fetchval("SELECT count(*) FROM pgcue.jobs WHERE state = 'completed'")
        if done >= total:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done} of {total} jobs completed within {timeout}s")
        await asyncio.sleep(0.05)


def _noop_jobs(n: int, job_type: str = "bench-noop") -> list[NewJob]:
    return [NewJob(type=job_type, channel_id=f"ch-{i % 16}", payload={}) for i in range(n)]


async def drain(
    base_dsn: str,
    jobs: int,
    processes: int = 1,
    concurrency: int | None = None,
    *,
    job_type: str = "bench-noop",
    env: dict[str, str] | None = None,
    prepare: Sequence[str] = (),
) -> dict[str, Any]:
    """N no-op jobs enqueued in one call, drained by `processes` worker processes; the
    clock runs from the enqueue's commit to the last completion. With one process, what
    the drain cost (CPU of PostgreSQL and of the worker, WAL; bench/peers/_peercommon.Cost)
    over the same interval. `prepare`: statements run in the scratch database first
    (bench/ablation.py)."""
    async with scratch_database(base_dsn) as settings:
        if prepare:
            conn = await db.connect(settings)
            try:
                for statement in prepare:
                    await conn.execute(statement)
            finally:
                await conn.close()
        workers = Workers(settings, job_type, processes, concurrency, env)
        try:
            await asyncio.to_thread(workers.wait_started)
            conn = await db.connect(settings)
            try:
                t0 = time.perf_counter()
                await Queue(conn).enqueue_many(_noop_jobs(jobs, job_type))
                enqueue_s = time.perf_counter() - t0
                committed = await conn.fetchval("SELECT clock_timestamp()")
                cost = pc.Cost(
                    workers.procs[0].pid,
                    lambda: conn.fetchval("SELECT pg_current_wal_lsn()::text"),
                    await conn.fetchval("SELECT pg_backend_pid()"),
                )
                await cost.start()
                await _wait_all_finished(conn, jobs, timeout=max(120, jobs / 500))
                spent = await cost.stop(jobs)
                last = await conn.fetchval("SELECT max(completed_at) FROM pgcue.jobs")
                statements = await conn.fetchrow(_STATEMENTS)
            finally:
                await conn.close()
        finally:
            workers.stop()
    seconds = max((last - committed).total_seconds(), 1e-6)
    out = {
        "jobs": jobs,
        "processes": processes,
        "drain_per_s": jobs / seconds,
        "enqueue_per_s": jobs / enqueue_s,
        "jobs_per_claim": jobs / max(statements["claims"], 1),
        "jobs_per_completion": jobs / max(statements["completions"], 1),
    }
    if processes == 1:
        out.update(spent)
    return out


# How many claim and completion statements the drain took: each one is a transaction, and
# every job's `running` and `completed` event carries its transaction's id.
_STATEMENTS = """
    SELECT count(DISTINCT tx) FILTER (WHERE data->>'state' = 'running') AS claims,
           count(DISTINCT tx) FILTER (WHERE data->>'state' = 'completed') AS completions
    FROM pgcue.job_events WHERE kind = 'job:status'
"""


async def _warm(queue: Queue, conn: asyncpg.Connection) -> None:
    """One quick job through, so the statement caches are warm; then an empty table."""
    await queue.enqueue_many(_noop_jobs(1, "bench-latency"))
    await _wait_all_finished(conn, 1, 30)
    await conn.execute("DELETE FROM pgcue.jobs")


async def _spaced(queue: Queue, jobs: int, gap: float) -> dict[uuid.UUID, float]:
    """`jobs` quick jobs enqueued one at a time `gap` apart: each one's commit time."""
    committed: dict[uuid.UUID, float] = {}
    for _ in range(jobs):
        (job_id,) = await queue.enqueue_many(_noop_jobs(1, "bench-latency"))
        committed[job_id] = time.time()
        await asyncio.sleep(gap)
    return committed


async def pickup_latency(base_dsn: str, jobs: int = 500, gap: float = 0.01) -> dict[str, Any]:
    """Idle, listening workers; jobs enqueued one at a time `gap` apart; commit → handler start."""
    async with scratch_database(base_dsn) as settings:
        workers = Workers(settings, "bench-latency", 1)
        try:
            await asyncio.to_thread(workers.wait_started)
            conn = await db.connect(settings)
            queue = Queue(conn)
            try:
                await _warm(queue, conn)
                committed = await _spaced(queue, jobs, gap)
                await _wait_all_finished(conn, jobs, 60)
                rows = await conn.fetch("SELECT id, result FROM pgcue.jobs")
            finally:
                await conn.close()
        finally:
            workers.stop()
    lat = sorted((r["result"]["t"] - committed[r["id"]]) * 1000 for r in rows)
    return {"jobs": jobs, "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95), "p99_ms": _pct(lat, 99)}


async def pickup_latency_under_load(
    base_dsn: str, jobs: int = 500, gap: float = 0.02, drain_jobs: int = 400_000
) -> dict[str, Any]:
    """While one worker process drains `drain_jobs` no-op jobs of one type at full speed,
    jobs of another type (its own worker process, listening) are enqueued one at a time
    `gap` apart: commit → handler start. `drained_meanwhile` says whether the drain was
    still going when the last of them started (else the figure is partly at idle)."""
    async with scratch_database(base_dsn) as settings:
        busy = Workers(settings, "bench-noop", 1)
        quick = Workers(settings, "bench-latency", 1)
        try:
            await asyncio.to_thread(busy.wait_started)
            await asyncio.to_thread(quick.wait_started)
            conn = await db.connect(settings)
            queue = Queue(conn)
            try:
                await _warm(queue, conn)
                # The backlog goes in by chunks from a second connection while the quick
                # jobs go in, so the drain is at full speed for the whole measurement.
                feeder = await db.connect(settings)
                chunk = 50_000
                first = asyncio.Event()

                async def feed() -> None:
                    for start in range(0, drain_jobs, chunk):
                        await Queue(feeder).enqueue_many(_noop_jobs(min(chunk, drain_jobs - start), "bench-noop"))
                        first.set()

                feeding = asyncio.create_task(feed())
                await asyncio.wait_for(first.wait(), 120)
                committed = await _spaced(queue, jobs, gap)
                await feeding
                await feeder.close()
                deadline = time.monotonic() + 60 + drain_jobs / 500
                while (
                    await conn.fetchval(  # the quick jobs, not the backlog's, must all be done
                        "SELECT count(*) FROM pgcue.jobs WHERE id = ANY($1) AND state = 'completed'", list(committed)
                    )
                    < jobs
                ):
                    if time.monotonic() > deadline:
                        raise TimeoutError("the quick jobs did not all complete")
                    await asyncio.sleep(0.05)
                rows = await conn.fetch("SELECT id, result FROM pgcue.jobs WHERE type = 'bench-latency'")
                # Still draining when the last quick job started?
                last_start = max(r["result"]["t"] for r in rows)
                drain_end = await conn.fetchval(
                    "SELECT extract(epoch FROM max(completed_at)) FROM pgcue.jobs WHERE type = 'bench-noop'"
                )
            finally:
                await conn.close()
        finally:
            busy.stop()
            quick.stop()
    lat = sorted((r["result"]["t"] - committed[r["id"]]) * 1000 for r in rows)
    return {
        "jobs": jobs,
        "gap_ms": gap * 1000,
        "drain_jobs": drain_jobs,
        "drained_meanwhile": float(drain_end) >= last_start,
        "p50_ms": _pct(lat, 50),
        "p95_ms": _pct(lat, 95),
        "p99_ms": _pct(lat, 99),
    }


async def enqueue(
    base_dsn: str, bulk_sizes: tuple[int, ...] = (10_000, 100_000), singles: int = 2000
) -> dict[str, Any]:
    """One bulk call of each size; then single enqueues over one connection."""
    out: dict[str, Any] = {}
    async with scratch_database(base_dsn) as settings:
        conn = await db.connect(settings)
        queue = Queue(conn)
        try:
            await queue.enqueue_many(_noop_jobs(10))  # warm up types and statement cache
            for size in bulk_sizes:
                batch = _noop_jobs(size)
                t0 = time.perf_counter()
                await queue.enqueue_many(batch)
                out[f"bulk_{size}_per_s"] = size / (time.perf_counter() - t0)
            one = _noop_jobs(1)
            t0 = time.perf_counter()
            for _ in range(singles):
                await queue.enqueue_many(one)
            out["single_per_s"] = singles / (time.perf_counter() - t0)
        finally:
            await conn.close()
    return out


async def ceiling(base_dsn: str, jobs: int, batch: int = 100, prepare: Sequence[str] = ()) -> dict[str, Any]:
    """The same drain in PL/pgSQL: what PostgreSQL itself allows on this machine.
    `prepare`: statements run in the scratch database first (bench/ablation.py's variants)."""
    procedure = (Path(__file__).parent / "ceiling.sql").read_text()
    async with scratch_database(base_dsn) as settings:
        conn = await db.connect(settings)
        try:
            # Jobs inserted plainly (no events): the ceiling's insert rate too.
            t0 = time.perf_counter()
            await conn.execute(
                """INSERT INTO pgcue.jobs (type, channel_id)
                   SELECT 'bench-noop', 'ch-' || (g % 16) FROM generate_series(1, $1) g""",
                jobs,
            )
            insert_s = time.perf_counter() - t0
            await conn.execute(procedure)
            for statement in prepare:
                await conn.execute(statement)
            # The server's CPU over the drain, as the drains measure it (every postgres
            # process): the claim and completion row work alone, with no events, no fair
            # claim, no notifications and no client.
            cpu0, t0 = pc.pg_cpu_seconds(), time.perf_counter()
            await conn.execute(f"CALL public.bench_ceiling_drain({int(batch)})")
            drain_s, cpu1 = time.perf_counter() - t0, pc.pg_cpu_seconds()
            left = await conn.fetchval("SELECT count(*) FROM pgcue.jobs WHERE state <> 'completed'")
            assert left == 0, f"{left} jobs left undrained"
        finally:
            await conn.close()
    return {
        "jobs": jobs,
        "drain_per_s": jobs / drain_s,
        "insert_per_s": jobs / insert_s,
        "pg_cpu_us_per_job": 1e6 * (cpu1 - cpu0) / jobs,
    }


def _pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def summarise(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


async def fairness(base_dsn: str, jobs: int = 20_000, channels: int = 16, batch: int = 100) -> dict[str, Any]:
    """Claim throughput with fairness on (the product's round-robin claim) and off (the
    plain priority-order claim, with the index it needs), on the same jobs and connection:
    claim a batch, record it complete, until the backlog is empty."""
    fifo_sql = (Path(__file__).parent / "claim_fifo.sql").read_text()
    out: dict[str, Any] = {"jobs": jobs, "channels": channels}
    for mode in ("fair", "fifo"):
        async with scratch_database(base_dsn) as settings:
            conn = await db.connect(settings)
            try:
                queue = Queue(conn)
                if mode == "fifo":
                    await conn.execute(
                        "CREATE INDEX bench_fifo_idx ON pgcue.jobs (type, priority DESC, run_at) WHERE state = 'queued'"
                    )
                batch_jobs = [NewJob(type="bench-noop", channel_id=f"ch-{i % channels}") for i in range(jobs)]
                await queue.enqueue_many(batch_jobs)
                await conn.execute("ANALYZE pgcue.jobs")
                cursor, done = "", 0
                t0 = time.perf_counter()
                while done < jobs:
                    if mode == "fair":
                        claimed = await queue.claim("bench-noop", batch, "bench", 60, cursor=cursor)
                        cursor = claimed.next_cursor
                        got = [(c.id, c.fence) for c in claimed]
                    else:
                        rows = await conn.fetch(fifo_sql, "bench-noop", batch, "bench", 60.0)
                        got = [(r["id"], r["fence"]) for r in rows]
                    if not got:
                        raise RuntimeError(f"{mode}: claimed nothing with {jobs - done} jobs left")
                    await queue.complete([Completion(i, a) for i, a in got])
                    done += len(got)
                out[f"{mode}_per_s"] = jobs / (time.perf_counter() - t0)
            finally:
                await conn.close()
    out["fair_to_fifo_pct"] = 100 * out["fair_per_s"] / out["fifo_per_s"]
    return out
