#!/usr/bin/env python
"""pgqueuer peer benchmark.  Run with bench/.venvs/pgqueuer/bin/python.

    bench/.venvs/pgqueuer/bin/python bench/peers/pgqueuer_bench.py \
        --dsn postgresql://postgres@127.0.0.1:5432/postgres --workload drain --jobs 20000

Prints one JSON line on stdout (see _peercommon.py for how each figure is
measured).  A fresh database bench_pgqueuer_<hex> is created, the schema is
installed with pgqueuer's own API (Queries.install(), the same DDL `pgq
install` runs), and the database is dropped at the end, even on error.

Worker: ONE separate OS process running pgqueuer's own worker loop via
pgqueuer.run(factory) (what `pgq run` calls), on uvloop + asyncpg, for both
workloads.
Throughput tuning (see WORKER_BATCH_SIZE): --batch-size (jobs dequeued per
query; the job-status log buffer flushes at the same size), no
--max-concurrent-tasks cap.  Everything else is default.

Bulk enqueue: Queries.enqueue() with lists (one INSERT ... unnest() round-trip)
in chunks of ENQUEUE_CHUNK.  Latency enqueue: Queries.enqueue() scalar form,
one autocommitted statement per job.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import _peercommon as pc
import asyncpg

PEER = "pgqueuer"
ENV_DSN = "BENCH_DB_DSN"
ENV_MARKS = "BENCH_MARKS"

# Jobs fetched per dequeue query; pgqueuer's default is 10.  Chosen by a sweep
# on this machine (10/50/100/200/500), see README.md.
WORKER_BATCH_SIZE = int(os.environ.get("BENCH_PGQ_BATCH_SIZE", "100"))
# Handlers at once (pgqueuer.run's max_concurrent_tasks; unset: pgqueuer's default, no cap),
# so a run "at concurrency 50" means the same for pgcue and for pgqueuer.
MAX_CONCURRENT = os.environ.get("BENCH_PGQ_MAX_CONCURRENT")
ENQUEUE_CHUNK = int(os.environ.get("BENCH_ENQUEUE_CHUNK", "20000"))

_marker = pc.Marker(os.environ.get(ENV_MARKS))


# --------------------------------------------------------------------------
# Worker side: imported by `pgq run pgqueuer_bench:create_pgqueuer`
# --------------------------------------------------------------------------


@asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[object]:
    from pgqueuer import PgQueuer
    from pgqueuer.models import Job

    conn = await asyncpg.connect(os.environ[ENV_DSN])
    try:
        pgq = PgQueuer.from_asyncpg_connection(conn)

        @pgq.entrypoint("noop")
        async def noop(job: Job) -> None:
            _marker.mark_first()

        @pgq.entrypoint("lat")
        async def lat(job: Job) -> None:
            ts = time.time()  # handler start
            _marker.mark((job.payload or b"?").decode(), ts)

        yield pgq
    finally:
        await conn.close()


def worker_argv() -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "--as-worker"]


def worker_main() -> int:
    """Worker process: pgqueuer.run() is the programmatic twin of `pgq run`
    (same supervisor, same QueueManager.run loop), executed on uvloop as the
    CLI does.  We don't shell out to `pgq run` itself because pgqueuer 1.6.0's
    CLI crashes at start-up with the typer release it resolves to
    (setup_fancy_logger gets a str for --log-level)."""
    import logging
    from datetime import timedelta

    import pgqueuer
    import uvloop

    logging.basicConfig(level=logging.WARNING)
    options: dict = {"batch_size": WORKER_BATCH_SIZE, "dequeue_timeout": timedelta(seconds=30)}
    if MAX_CONCURRENT:
        options["max_concurrent_tasks"] = int(MAX_CONCURRENT)
    uvloop.run(pgqueuer.run(create_pgqueuer, **options))
    return 0


# --------------------------------------------------------------------------
# Benchmark side
# --------------------------------------------------------------------------


def pgq_version() -> str:
    from importlib.metadata import version

    return version("pgqueuer")


async def admin_exec(server_dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(server_dsn, timeout=30)
    try:
        await conn.execute(sql, timeout=120)
    finally:
        await conn.close()


def start_worker(db_dsn: str, marks: str) -> pc.WorkerProc:
    here = os.path.dirname(os.path.abspath(__file__))
    env = {ENV_DSN: db_dsn, ENV_MARKS: marks, "PYTHONPATH": here + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return pc.WorkerProc(worker_argv(), env, PEER, cwd=here)


async def run_drain(args, db_dsn: str, marks: str) -> dict:
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    n = args.jobs
    conn = await asyncpg.connect(db_dsn)
    worker = None
    try:
        q = Queries(AsyncpgDriver(conn))
        await q.install()

        t0 = time.perf_counter()
        for start in range(0, n, ENQUEUE_CHUNK):
            k = min(ENQUEUE_CHUNK, n - start)
            await q.enqueue(["noop"] * k, [None] * k, [0] * k)
        enqueue_s = time.perf_counter() - t0
        assert await conn.fetchval("SELECT count(*) FROM pgqueuer") == n
        if not args.no_analyze:
            await conn.execute("ANALYZE")

        worker = start_worker(db_dsn, marks)

        res = await pc.timed_drain(
            worker,
            marks,
            lambda: conn.fetchval("SELECT count(*) FROM pgqueuer"),
            n,
            enqueue_s,
            args.timeout,
            lsn=lambda: conn.fetchval("SELECT pg_current_wal_lsn()::text"),
            observer_pid=await conn.fetchval("SELECT pg_backend_pid()"),
        )
        worker.check_alive()
        bad = await conn.fetchval(
            "SELECT count(*) FROM pgqueuer_log WHERE status <> 'successful' AND status NOT IN ('queued', 'picked')"
        )
        if bad:
            raise RuntimeError(f"{bad} jobs did not succeed")
        res["analyzed"] = not args.no_analyze
        res["enqueue_chunk"] = ENQUEUE_CHUNK
        res["worker"] = {
            "process": "separate (pgqueuer.run)",
            "batch_size": WORKER_BATCH_SIZE,
            "max_concurrent_tasks": MAX_CONCURRENT,
        }
        return res
    finally:
        if worker is not None:
            worker.stop()
            worker.cleanup()
        await conn.close()


async def run_latency(args, db_dsn: str, marks: str) -> dict:
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(db_dsn)
    worker = None
    try:
        q = Queries(AsyncpgDriver(conn))
        await q.install()
        worker = start_worker(db_dsn, marks)

        # Warm-up: proves the worker is up and LISTENing, then let it go idle.
        warm = [f"w{i}" for i in range(pc.WARMUP_JOBS)]
        for key in warm:
            await q.enqueue("lat", key.encode())
        await pc.wait_for_marks(marks, warm, pc.WORKER_READY_TIMEOUT_S, worker)
        await asyncio.sleep(0.5)

        commit_ts: dict[str, float] = {}
        call_s: list[float] = []
        t0 = time.monotonic()
        for i in range(args.latency_jobs):
            delay = t0 + i * pc.LATENCY_GAP_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            key = str(i)
            c0 = time.time()
            await q.enqueue("lat", key.encode())  # autocommit: returns after COMMIT
            commit_ts[key] = time.time()
            call_s.append(commit_ts[key] - c0)
        got = await pc.wait_for_marks(marks, commit_ts.keys(), args.timeout, worker)
        res = pc.latency_summary(commit_ts, got, call_s)
        res["worker"] = {
            "process": "separate (pgqueuer.run)",
            "batch_size": WORKER_BATCH_SIZE,
            "max_concurrent_tasks": MAX_CONCURRENT,
        }
        return res
    finally:
        if worker is not None:
            worker.stop()
            worker.cleanup()
        await conn.close()


async def main() -> int:
    return await pc.bench_main(PEER, pgq_version(), admin_exec, run_drain, run_latency)


if __name__ == "__main__":
    if "--as-worker" in sys.argv[1:]:
        sys.exit(worker_main())
    sys.exit(asyncio.run(main()))
