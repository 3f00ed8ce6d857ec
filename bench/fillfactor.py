"""Would a fill factor on `pgcue.jobs` keep a drain flat with history kept? A measuring
tool for that question (docs/benchmarks.md, "Kept history"), not a workload of `make bench`.

The `history` drain (bench/history.py) into a database holding `--kept` finished jobs
(bench/panel_fill.sql, vacuumed), in five variants, rounds interleaved:
- `empty_100`, `empty_<ff>`: no history, the table at fill factor 100 (PostgreSQL's
  default, pgcue's today) and at `--fillfactor`;
- `kept_100`: the history written and drained at fill factor 100;
- `kept_alter_<ff>`: the history written at 100, then the fill factor lowered (what a
  migration would do to a populated database);
- `kept_born_<ff>`: the fill factor set before the history was written (a database that
  had the setting from its first migration).

    python -m bench.fillfactor --kept 3000000 --rounds 2 --fillfactor 70
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from contextlib import AsyncExitStack
from typing import Any

from bench import history as h
from bench import pgcue_bench as pb
from pgcue.core import db


def variants(ff: int) -> dict[str, tuple[bool, int | None, int | None]]:
    """name: (history kept, fill factor before the fill, fill factor after it)."""
    return {
        "empty_100": (False, None, None),
        f"empty_{ff}": (False, ff, None),
        "kept_100": (True, None, None),
        f"kept_alter_{ff}": (True, None, ff),
        f"kept_born_{ff}": (True, ff, None),
    }


async def run(dsn: str, kept: int, rounds: int, ff: int, jobs: int) -> dict[str, list[dict[str, Any]]]:
    async with AsyncExitStack() as stack:
        dbs = {}
        for name, (with_history, before, after) in variants(ff).items():
            settings = await stack.enter_async_context(pb.scratch_database(dsn))
            conn = await db.connect(settings)
            try:
                if before:
                    await conn.execute(f"ALTER TABLE pgcue.jobs SET (fillfactor = {before})")
                if with_history:
                    began = time.monotonic()
                    await h.fill(conn, kept)
                    print(f"  {name}: {kept:,} kept, written in {time.monotonic() - began:.0f} s", flush=True)
                if after:
                    await conn.execute(f"ALTER TABLE pgcue.jobs SET (fillfactor = {after})")
            finally:
                await conn.close()
            dbs[name] = settings
        runs: dict[str, list[dict[str, Any]]] = {n: [] for n in dbs}
        for r in range(rounds):
            for name, settings in dbs.items():
                got = await h._drain(settings, jobs)
                runs[name].append(got)
                heap = h.heap_images_per_job(got)
                print(
                    f"  round {r + 1} {name:<16} PostgreSQL {got['pg_cpu_us_per_job']:6.1f} µs/job, "
                    f"{got['drain_per_s']:8,.0f} jobs/s, jobs heap {heap:.3f} full-page images/job, "
                    f"{got['heap_pages_per_1000_jobs']:7.1f} pages per 1,000 jobs",
                    flush=True,
                )
        return runs


def _fillfactor(text: str) -> int:
    ff = int(text)
    if not 10 <= ff <= 99:
        raise argparse.ArgumentTypeError(f"{ff} is not between 10 and 99")
    return ff


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--kept", type=int, default=3_000_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--fillfactor", type=_fillfactor, default=70, help="10 to 99 (PostgreSQL's range, less 100)")
    p.add_argument("--jobs", type=int, default=20_000)
    args = p.parse_args()
    runs = asyncio.run(run(args.dsn, args.kept, args.rounds, args.fillfactor, args.jobs))
    print("\n  medians")
    for name, got in runs.items():
        figures = "  ".join(f"{f} {statistics.median(x[f] for x in got):,.2f}" for f in h.FIGURES)
        print(f"  {name:<16} {figures}")


if __name__ == "__main__":
    main()
