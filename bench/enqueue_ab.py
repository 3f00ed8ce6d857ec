"""The keyless enqueue statement against the keyed one, on the same rows: 100,000 no-op
jobs without keys through `enqueue_jobs` (ON CONFLICT DO NOTHING, answers with the ids)
and through `enqueue_jobs_keyless` (what Queue.enqueue_many runs when no job has a key),
in interleaved rounds, each into emptied tables right after a CHECKPOINT.

    .venv/bin/python -m bench.enqueue_ab [--jobs 100000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench import pgcue_bench as pb
from pgcue.core import db
from pgcue.core.queue import Queue
from pgcue.core.queue.enqueue import enqueue_args, keyless_args


def _params(name: str, args: list) -> list:
    return args if name == "enqueue_jobs" else keyless_args(args) or []


async def compare(dsn: str, jobs: int, rounds: int) -> dict[str, list[float]]:
    got: dict[str, list[float]] = {"enqueue_jobs": [], "enqueue_jobs_keyless": []}
    async with pb.scratch_database(dsn) as settings:
        conn = await db.connect(settings)
        try:
            queue = Queue(conn)
            for name in got:  # warm both statements (asyncpg's type introspection, plans)
                _, args = enqueue_args(pb._noop_jobs(10))
                await queue.sql.fetch(conn, name, *_params(name, args))
            for _ in range(rounds):
                for name, runs in got.items():
                    await conn.execute("TRUNCATE pgcue.jobs, pgcue.job_events")
                    await conn.execute("CHECKPOINT")
                    batch = pb._noop_jobs(jobs)
                    t0 = time.perf_counter()
                    _, args = enqueue_args(batch)
                    await queue.sql.fetch(conn, name, *_params(name, args))
                    runs.append(jobs / (time.perf_counter() - t0))
        finally:
            await conn.close()
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    got = asyncio.run(compare(args.dsn, args.jobs, args.rounds))
    for name, runs in got.items():
        print(f"{name:<22} jobs/s {statistics.median(runs):>10,.0f}  runs {[round(r) for r in runs]}")
    keyed, keyless = (statistics.median(r) for r in got.values())
    print(f"keyless / keyed        {keyless / keyed:.3f}")


if __name__ == "__main__":
    main()
