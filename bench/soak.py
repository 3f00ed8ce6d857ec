"""The soak: many no-op jobs (1,000,000 by default) enqueued in batches, then drained by worker
processes; throughput per 10% slice of completions, and the size of pgcue.jobs and
pgcue.job_events before and after. Run only when asked (`--soak`): it is long.

Does the queue slow down as finished rows, dead tuples and index entries pile up? The
last slice's throughput should be within 25% of the first's.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.pgcue_bench import Workers, _noop_jobs, _wait_all_finished, scratch_database
from pgcue.core import db
from pgcue.core.queue import Queue

TABLES = ("jobs", "job_events")

SIZES = """
SELECT c.relname AS table,
       pg_total_relation_size(c.oid) AS total_bytes,
       pg_relation_size(c.oid) AS heap_bytes,
       pg_indexes_size(c.oid) AS index_bytes,
       s.n_dead_tup AS dead_rows
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname = 'pgcue' AND c.relname = ANY($1::text[])
ORDER BY c.relname
"""

# Completions in order, cut into ten equal slices: each slice's first and last completed_at.
SLICES = """
SELECT slice, count(*) AS jobs, min(completed_at) AS first_at, max(completed_at) AS last_at
FROM (SELECT completed_at, ntile(10) OVER (ORDER BY completed_at) AS slice
      FROM pgcue.jobs WHERE state = 'completed') t
GROUP BY slice ORDER BY slice
"""

# The longest pauses between consecutive completions, and where in the run they fell: a
# worker that idles with work queued (a missed wake-up) shows here as a gap of about the
# poll interval.
GAPS = """
SELECT extract(epoch FROM gap)::float8 AS seconds, 100.0 * pos / count(*) OVER () AS at_pct
FROM (SELECT completed_at - lag(completed_at) OVER (ORDER BY completed_at) AS gap,
             row_number() OVER (ORDER BY completed_at) AS pos
      FROM pgcue.jobs WHERE state = 'completed') t
ORDER BY gap DESC NULLS LAST LIMIT 3
"""


async def _sizes(conn: Any) -> dict[str, dict[str, int]]:
    # No ANALYZE here: it would change the claim's plans under test. Dead rows come from the
    # cumulative statistics (an estimate, possibly a second behind); row counts are exact.
    rows = await conn.fetch(SIZES, list(TABLES))
    fields = ("total_bytes", "heap_bytes", "index_bytes", "dead_rows")
    out = {r["table"]: {k: int(r[k] or 0) for k in fields} for r in rows}
    for table in TABLES:  # exact: ANALYZE's live-row figure is an estimate from a sample
        out[table]["rows"] = int(await conn.fetchval(f"SELECT count(*) FROM pgcue.{table}"))
    return out


def slice_rates(rows: list[Any]) -> list[dict[str, Any]]:
    """Jobs/s per slice: a slice runs from the previous slice's last completion (the first
    slice: from its own first completion) to its own last completion."""
    out = []
    prev_end = None
    for r in rows:
        start = prev_end if prev_end is not None else r["first_at"]
        jobs = r["jobs"] if prev_end is not None else r["jobs"] - 1
        seconds = max((r["last_at"] - start).total_seconds(), 1e-6)
        out.append(
            {"slice": int(r["slice"]), "jobs": int(r["jobs"]), "seconds": round(seconds, 3), "per_s": jobs / seconds}
        )
        prev_end = r["last_at"]
    return out


async def soak(base_dsn: str, jobs: int = 1_000_000, processes: int = 1, batch: int = 10_000) -> dict[str, Any]:
    """Enqueue `jobs` no-op jobs in batches of `batch` (workers not yet running), then drain
    them with `processes` worker processes."""
    async with scratch_database(base_dsn) as settings:
        conn = await db.connect(settings)
        try:
            empty = await _sizes(conn)
            queue = Queue(conn)
            t0 = time.perf_counter()
            for start in range(0, jobs, batch):
                await queue.enqueue_many(_noop_jobs(min(batch, jobs - start)))
            enqueue_s = time.perf_counter() - t0
            enqueued = await _sizes(conn)
            workers = Workers(settings, "bench-noop", processes)
            try:
                await asyncio.to_thread(workers.wait_started)
                await _wait_all_finished(conn, jobs, timeout=max(600, jobs / 200))
            finally:
                workers.stop()
            drained = await _sizes(conn)
            rows = await conn.fetch(SLICES)
            gaps = [
                {"seconds": round(r["seconds"], 3), "at_pct": round(float(r["at_pct"]), 1)}
                for r in await conn.fetch(GAPS)
                if r["seconds"] is not None
            ]
            span = await conn.fetchval(
                "SELECT extract(epoch FROM max(completed_at) - min(completed_at)) FROM pgcue.jobs"
            )
        finally:
            await conn.close()
    slices = slice_rates(rows)
    first, last = slices[0]["per_s"], slices[-1]["per_s"]
    return {
        "jobs": jobs,
        "processes": processes,
        "batch": batch,
        "enqueue_per_s": jobs / enqueue_s,
        "drain_per_s": (jobs - 1) / max(float(span), 1e-6),
        "slices": slices,
        "first_slice_per_s": first,
        "last_slice_per_s": last,
        "last_to_first": last / first,
        "last_within_25pct": last >= 0.75 * first,
        "longest_gaps": gaps,
        "sizes": {"empty": empty, "enqueued": enqueued, "drained": drained},
    }
