#!/usr/bin/env python
"""chancy peer benchmark.  Run with bench/.venvs/chancy/bin/python.

    bench/.venvs/chancy/bin/python bench/peers/chancy_bench.py \
        --dsn postgresql://postgres@127.0.0.1:5432/postgres --workload drain --jobs 20000

Prints one JSON line on stdout (see _peercommon.py for how each figure is
measured).  A fresh database bench_chancy_<hex> is created, the schema is
installed with chancy's own API (Chancy.migrate(), what `chancy misc migrate`
runs), and the database is dropped at the end, even on error.

Worker: ONE separate OS process running chancy's own Worker exactly as the
`chancy worker start` CLI does (`async with Worker(chancy) as w: await
w.wait_for_shutdown()`); we call it from this file's --as-worker mode because
the CLI needs the optional `click` extra.  Default plugins (leadership, pruner,
recovery, metrics, workflow) stay enabled.  Throughput tuning, all on the
queue declaration (QUEUE_* below):
  executor=Chancy.Executor.Async  jobs are `async def`, run on the worker loop
                                  (default ProcessExecutor pays IPC per job)
  concurrency=C                   jobs in flight == max jobs claimed per fetch
  eager_polling=True              re-fetch as soon as a job completes instead
                                  of waiting polling_interval
  polling_interval=1              (default 5 s) fallback poll
plus the worker app logs at WARNING (chancy's default INFO logs one line per
pulled job).  Chancy writes job results back in batches every
Worker.send_outgoing_interval (1 s, default, untouched), so the completion
seen in the table can trail the last job by up to ~1 s; the extra field
drain_per_s_by_completed_at uses chancy's own completed_at stamp instead.

Bulk enqueue: Chancy.push_many(jobs) (its default batch_size=1000 jobs per
transaction; chancy issues one INSERT per job inside each transaction).
Latency enqueue: Chancy.push(job), one transaction per job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

import _peercommon as pc

PEER = "chancy"
ENV_DSN = "BENCH_DB_DSN"
ENV_MARKS = "BENCH_MARKS"
QUEUE_NAME = "bench"
MODULE = "chancy_bench"  # jobs are referenced by import path

QUEUE_CONCURRENCY = int(os.environ.get("BENCH_CHANCY_CONCURRENCY", "500"))
PUSH_BATCH_SIZE = 1000  # chancy's default for push_many

_marker = pc.Marker(os.environ.get(ENV_MARKS))


# --------------------------------------------------------------------------
# Job functions (imported by the worker as chancy_bench.noop / chancy_bench.lat)
# --------------------------------------------------------------------------


async def noop() -> None:
    _marker.mark_first()


async def lat(seq: str) -> None:
    ts = time.time()  # handler start
    _marker.mark(seq, ts)


def _quiet_logger() -> logging.Logger:
    lg = logging.getLogger("chancy.bench")
    if not lg.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        lg.addHandler(h)
    lg.setLevel(logging.WARNING)
    lg.propagate = False
    return lg


def make_chancy(dsn: str):
    from chancy import Chancy

    return Chancy(dsn, log=_quiet_logger())


def bench_queue():
    from chancy import Chancy, Queue

    return Queue(
        QUEUE_NAME,
        concurrency=QUEUE_CONCURRENCY,
        executor=Chancy.Executor.Async,
        polling_interval=1,
        eager_polling=True,
    )


async def worker_main() -> int:
    from chancy import Worker

    async with make_chancy(os.environ[ENV_DSN]) as chancy, Worker(chancy) as worker:
        await worker.wait_for_shutdown()
    return 0


# --------------------------------------------------------------------------
# Benchmark side
# --------------------------------------------------------------------------


def worker_argv() -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "--as-worker"]


def start_worker(db_dsn: str, marks: str) -> pc.WorkerProc:
    here = os.path.dirname(os.path.abspath(__file__))
    env = {ENV_DSN: db_dsn, ENV_MARKS: marks, "PYTHONPATH": here + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return pc.WorkerProc(worker_argv(), env, PEER, cwd=here)


def peer_version() -> str:
    from importlib.metadata import version

    return version("chancy")


async def admin_execute(server_dsn: str, sql: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(server_dsn, autocommit=True, connect_timeout=30) as conn:
        await conn.execute(sql)


async def scalar(chancy, sql: str) -> int:
    async with chancy.pool.connection() as conn:
        cur = await conn.execute(sql)
        row = await cur.fetchone()
        return int(row[0])


UNFINISHED_SQL = "SELECT count(*) FROM chancy_jobs WHERE state NOT IN ('succeeded', 'failed')"


def worker_info() -> dict:
    return {
        "process": "separate (chancy Worker)",
        "executor": "Async",
        "concurrency": QUEUE_CONCURRENCY,
        "eager_polling": True,
        "polling_interval": 1,
    }


async def run_drain(args, db_dsn: str, marks: str) -> dict:
    from chancy import Job

    n = args.jobs
    worker = None
    async with make_chancy(db_dsn) as chancy:
        try:
            await chancy.migrate()
            await chancy.declare(bench_queue())
            jobs = [Job(func=f"{MODULE}.noop", queue=QUEUE_NAME) for _ in range(n)]

            t0 = time.perf_counter()
            async for _refs in chancy.push_many(jobs, batch_size=PUSH_BATCH_SIZE):
                pass
            enqueue_s = time.perf_counter() - t0
            assert await scalar(chancy, UNFINISHED_SQL) == n
            if not args.no_analyze:
                async with chancy.pool.connection() as conn:
                    await conn.set_autocommit(True)
                    await conn.execute("ANALYZE")
                    await conn.set_autocommit(False)

            worker = start_worker(db_dsn, marks)

            res = await pc.observed_drain(worker, marks, db_dsn, UNFINISHED_SQL, n, enqueue_s, args.timeout)
            first_ts = pc.read_marks(marks)["first"]
            ok = await scalar(chancy, "SELECT count(*) FROM chancy_jobs WHERE state = 'succeeded'")
            if ok != n:
                raise RuntimeError(f"only {ok}/{n} jobs succeeded")
            # Secondary figure, free of the up-to-1 s result-flush lag: the
            # worker's own completion stamp of the last job.
            async with chancy.pool.connection() as conn:
                cur = await conn.execute("SELECT extract(epoch FROM max(completed_at))::float8 FROM chancy_jobs")
                last_completed = float((await cur.fetchone())[0])
            res["drain_per_s_by_completed_at"] = round(n / max(last_completed - first_ts, 1e-9), 1)
            res["analyzed"] = not args.no_analyze
            res["enqueue_chunk"] = PUSH_BATCH_SIZE
            res["worker"] = worker_info()
            return res
        finally:
            if worker is not None:
                worker.stop()
                worker.cleanup()


async def run_latency(args, db_dsn: str, marks: str) -> dict:
    from chancy import Job

    worker = None
    async with make_chancy(db_dsn) as chancy:
        try:
            await chancy.migrate()
            await chancy.declare(bench_queue())
            worker = start_worker(db_dsn, marks)

            def job(key: str):
                return Job(func=f"{MODULE}.lat", queue=QUEUE_NAME, kwargs={"seq": key})

            warm = [f"w{i}" for i in range(pc.WARMUP_JOBS)]
            for key in warm:
                await chancy.push(job(key))
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
                j = job(key)
                c0 = time.time()
                await chancy.push(j)  # returns after its transaction committed
                commit_ts[key] = time.time()
                call_s.append(commit_ts[key] - c0)
            got = await pc.wait_for_marks(marks, commit_ts.keys(), args.timeout, worker)
            res = pc.latency_summary(commit_ts, got, call_s)
            res["worker"] = worker_info()
            return res
        finally:
            if worker is not None:
                worker.stop()
                worker.cleanup()


async def main() -> int:
    return await pc.bench_main(PEER, peer_version(), admin_execute, run_drain, run_latency)


if __name__ == "__main__":
    if "--as-worker" in sys.argv[1:]:
        sys.exit(asyncio.run(worker_main()))
    sys.exit(asyncio.run(main()))
