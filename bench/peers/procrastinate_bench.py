#!/usr/bin/env python
"""procrastinate peer benchmark.  Run with bench/.venvs/procrastinate/bin/python.

    bench/.venvs/procrastinate/bin/python bench/peers/procrastinate_bench.py \
        --dsn postgresql://postgres@127.0.0.1:5432/postgres --workload drain --jobs 5000

Prints one JSON line on stdout (see _peercommon.py for how each figure is
measured).  A fresh database bench_procrastinate_<hex> is created, the schema
is installed with procrastinate's own API (SchemaManager.apply_schema_async(),
what `procrastinate schema --apply` runs), and the database is dropped at the
end, even on error.

Worker: procrastinate's own CLI, `python -m procrastinate
--app=procrastinate_bench.app worker ...`, as ONE separate OS process, for both
workloads.  Tasks are `async def` (run on the worker's event loop, no thread
hop).  Throughput tuning (WORKER_CONCURRENCY, POOL_SIZE below):
  --concurrency C   parallel jobs per worker (procrastinate's default is 1);
                    chosen by a sweep on this machine, see README.md
  pool min=max=C+2  psycopg pool of the worker (the default pool holds 4
                    connections, which starves C > 2)
  --delete-jobs never (procrastinate's default: finished rows are kept)
  --log-level warning (the CLI default INFO writes two log lines per job)
Everything else (LISTEN/NOTIFY on, polling interval, heartbeats) is default.
procrastinate fetches ONE job per fetch query by design; there is no fetch
batch size to tune.

Bulk enqueue: Task.batch_defer_async(*kwargs) (one procrastinate_defer_jobs
call per chunk of ENQUEUE_CHUNK jobs).  Latency enqueue: Task.defer_async(),
one autocommitted call per job.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import _peercommon as pc
import procrastinate

PEER = "procrastinate"
ENV_DSN = "BENCH_DB_DSN"
ENV_MARKS = "BENCH_MARKS"
QUEUE = "bench"

WORKER_CONCURRENCY = int(os.environ.get("BENCH_PROC_CONCURRENCY", "10"))
POOL_SIZE = WORKER_CONCURRENCY + 2
ENQUEUE_CHUNK = int(os.environ.get("BENCH_ENQUEUE_CHUNK", "20000"))

_marker = pc.Marker(os.environ.get(ENV_MARKS))


def build_app(dsn: str | None, pool_size: int | None = None) -> procrastinate.App:
    kwargs: dict = {"conninfo": dsn or ""}
    if pool_size:
        kwargs.update(min_size=pool_size, max_size=pool_size)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(**kwargs))

    @app.task(name="noop", queue=QUEUE)
    async def noop() -> None:
        _marker.mark_first()

    @app.task(name="lat", queue=QUEUE)
    async def lat(seq: str) -> None:
        ts = time.time()  # handler start
        _marker.mark(seq, ts)

    return app


# The worker process imports this module and uses `app` (--app=procrastinate_bench.app).
# Not built when run as a script: procrastinate warns about apps living in __main__.
if __name__ != "__main__":
    app = build_app(os.environ.get(ENV_DSN), POOL_SIZE)


def _module():
    """This file imported as a regular module (tasks must not live in __main__)."""
    import procrastinate_bench

    return procrastinate_bench


def worker_argv() -> list[str]:
    return [
        sys.executable,
        "-m",
        "procrastinate",
        "--app=procrastinate_bench.app",
        "--log-level",
        "warning",  # default INFO logs 2 lines per job
        "worker",
        "--queues",
        QUEUE,
        "--concurrency",
        str(WORKER_CONCURRENCY),
        "--delete-jobs",
        "never",
    ]


def start_worker(db_dsn: str, marks: str) -> pc.WorkerProc:
    here = os.path.dirname(os.path.abspath(__file__))
    env = {ENV_DSN: db_dsn, ENV_MARKS: marks, "PYTHONPATH": here + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return pc.WorkerProc(worker_argv(), env, PEER, cwd=here)


def peer_version() -> str:
    from importlib.metadata import version

    return version("procrastinate")


async def admin_execute(server_dsn: str, sql: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(server_dsn, autocommit=True, connect_timeout=30) as conn:
        await conn.execute(sql)


async def scalar(bapp: procrastinate.App, sql: str) -> int:
    async with bapp.connector.pool.connection() as conn:
        cur = await conn.execute(sql)
        row = await cur.fetchone()
        return int(row[0])


UNFINISHED_SQL = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"


async def run_drain(args, db_dsn: str, marks: str) -> dict:
    n = args.jobs
    bapp = _module().build_app(db_dsn, 2)
    worker = None
    async with bapp.open_async():
        try:
            await bapp.schema_manager.apply_schema_async()
            noop = bapp.tasks["noop"]

            t0 = time.perf_counter()
            for start in range(0, n, ENQUEUE_CHUNK):
                k = min(ENQUEUE_CHUNK, n - start)
                await noop.batch_defer_async(*({} for _ in range(k)))
            enqueue_s = time.perf_counter() - t0
            assert await scalar(bapp, UNFINISHED_SQL) == n
            if not args.no_analyze:
                async with bapp.connector.pool.connection() as conn:
                    await conn.execute("ANALYZE")

            worker = start_worker(db_dsn, marks)

            res = await pc.observed_drain(worker, marks, db_dsn, UNFINISHED_SQL, n, enqueue_s, args.timeout)
            ok = await scalar(bapp, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")
            if ok != n:
                raise RuntimeError(f"only {ok}/{n} jobs succeeded")
            res["analyzed"] = not args.no_analyze
            res["enqueue_chunk"] = ENQUEUE_CHUNK
            res["worker"] = {
                "process": "separate (procrastinate worker CLI)",
                "concurrency": WORKER_CONCURRENCY,
                "pool_size": POOL_SIZE,
            }
            return res
        finally:
            if worker is not None:
                worker.stop()
                worker.cleanup()


async def run_latency(args, db_dsn: str, marks: str) -> dict:
    bapp = _module().build_app(db_dsn, 2)
    worker = None
    async with bapp.open_async():
        try:
            await bapp.schema_manager.apply_schema_async()
            lat = bapp.tasks["lat"]
            worker = start_worker(db_dsn, marks)

            warm = [f"w{i}" for i in range(pc.WARMUP_JOBS)]
            for key in warm:
                await lat.defer_async(seq=key)
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
                await lat.defer_async(seq=key)  # pool conn in autocommit: committed on return
                commit_ts[key] = time.time()
                call_s.append(commit_ts[key] - c0)
            got = await pc.wait_for_marks(marks, commit_ts.keys(), args.timeout, worker)
            res = pc.latency_summary(commit_ts, got, call_s)
            res["worker"] = {
                "process": "separate (procrastinate worker CLI)",
                "concurrency": WORKER_CONCURRENCY,
                "pool_size": POOL_SIZE,
            }
            return res
        finally:
            if worker is not None:
                worker.stop()
                worker.cleanup()


async def main() -> int:
    return await pc.bench_main(PEER, peer_version(), admin_execute, run_drain, run_latency)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
