"""Where PostgreSQL's time per job goes, statement by statement: pg_stat_statements over a
drain, per job.

Three drains of the same 20,000 no-op jobs on 16 channels, each in its own scratch
database, rounds interleaved:
- `worker`: pgcue's worker process at the `equal` bench's tuned setting (bench/equal.py);
- `facade`: one connection claiming 500 through the Queue façade and completing the
  previous 500, in turn (the worker's SQL with no concurrency: what the statements cost
  by themselves);
- `floor`: today's table drained in PL/pgSQL (bench/redesign.sql, `today`).

For each, the claim and completion statements' execution and planning time per job,
shared buffers hit, WAL records and bytes per job. Execution time is wall time in the
backend: with other processes on the machine's cores it includes waiting for a core.

Needs pg_stat_statements loaded at server start (it cannot be loaded by a session):

    ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements';  -- then restart
    ALTER SYSTEM SET pg_stat_statements.track = 'all';                 -- statements in PL/pgSQL
    ALTER SYSTEM SET pg_stat_statements.track_planning = on;           -- then SELECT pg_reload_conf()
    python -m bench.statements --rounds 2

Undo it afterwards (ALTER SYSTEM RESET each, restart): it costs every statement a little,
and the other benches' figures are taken without it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import asyncpg

from bench import equal, redesign
from bench import pgcue_bench as pb
from bench.peers import _peercommon as pc
from pgcue.core import db
from pgcue.core.models import ClaimedJob, Completion, NewJob
from pgcue.core.queue import Queue

JOBS = 20_000
QUERY = """
SELECT CASE WHEN query ~ '^-- claim_jobs' OR query ~ '^WITH next AS' THEN 'claim'
            WHEN query ~ '^-- complete_jobs' OR query ~ '^WITH done AS' THEN 'complete' END AS statement,
       sum(calls) AS calls, sum(plans) AS plans,
       sum(total_exec_time) * 1000 / $1 AS exec_us, sum(total_plan_time) * 1000 / $1 AS plan_us,
       sum(shared_blks_hit)::float8 / $1 AS hits, sum(wal_records)::float8 / $1 AS wal_records,
       sum(wal_bytes)::float8 / $1 AS wal_bytes
FROM pg_stat_statements
WHERE query ~ '^(-- claim_jobs|-- complete_jobs|WITH next AS|WITH done AS)'
GROUP BY 1 ORDER BY 1
"""


async def facade_drain(dsn: str, jobs: int, batch: int = 500) -> dict[str, Any]:
    async with pb.scratch_database(dsn) as settings:
        conn = await db.connect(settings)
        try:
            queue = Queue(conn)
            await queue.enqueue_many([NewJob(type="bench-noop", channel_id=f"ch-{i % 16}") for i in range(jobs)])
            await conn.execute("ANALYZE")
            cpu0, t0 = pc.pg_cpu_seconds(), time.perf_counter()
            cursor = ""
            held: list[ClaimedJob] = []
            while True:
                got = await queue.claim("bench-noop", batch, "bench-facade", 60.0, cursor=cursor)
                cursor = got.next_cursor
                if held:
                    await queue.complete([Completion(j.id, j.fence) for j in held])
                if not got:
                    break
                held = list(got)
            drain_s, cpu1 = time.perf_counter() - t0, pc.pg_cpu_seconds()
            left = await conn.fetchval("SELECT count(*) FROM pgcue.jobs WHERE state <> 'completed'")
            assert left == 0, f"{left} jobs left undrained"
        finally:
            await conn.close()
    return {"drain_per_s": jobs / drain_s, "pg_cpu_us_per_job": 1e6 * (cpu1 - cpu0) / jobs}


async def measured(dsn: str, which: str, jobs: int) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_statements_reset()")
        if which == "worker":
            got = await equal.pgcue_drain(dsn, jobs, "tuned")
        elif which == "facade":
            got = await facade_drain(dsn, jobs)
        else:
            got = await redesign.drain(dsn, jobs, "today", 500)
        rows = await conn.fetch(QUERY, jobs)
    finally:
        await conn.close()
    out = [f"{which}: {got['drain_per_s']:,.0f} jobs/s, PostgreSQL CPU {got['pg_cpu_us_per_job']:.1f} µs a job"]
    for r in rows:
        out.append(
            f"  {r['statement']:<9} calls {r['calls']:>3}, plans {r['plans']:>3}: exec {r['exec_us']:5.1f} µs, "
            f"plan {r['plan_us']:4.2f} µs, {r['hits']:4.1f} buffers, {r['wal_records']:4.1f} WAL records, "
            f"{r['wal_bytes']:5.0f} WAL bytes (per job)"
        )
    return out


async def main_async(dsn: str, rounds: int, jobs: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        loaded = await conn.fetchval(
            "SELECT 'pg_stat_statements' = ANY(string_to_array(current_setting('shared_preload_libraries'), ','))"
        )
        if not loaded:
            raise SystemExit("bench.statements: pg_stat_statements is not in shared_preload_libraries (see --help)")
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()
    for r in range(rounds):
        for which in ("worker", "facade", "floor"):
            print(f"round {r + 1}/{rounds}", *await measured(dsn, which, jobs), sep="\n", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--jobs", type=int, default=JOBS)
    args = p.parse_args()
    asyncio.run(main_async(args.dsn, args.rounds, args.jobs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
