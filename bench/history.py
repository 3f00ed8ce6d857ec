"""Kept history: does claim + complete get dearer when the table holds millions of
finished jobs (retention keeps them until cleared), and what does pruning a day of them
cost? Run only when asked (`--history`, 10,000,000 finished jobs unless --history-jobs).

Two scratch databases, measured the same way, in interleaved rounds:
- `empty`: a drain of `jobs` no-op jobs (one worker process, 50 at once, pgcue's defaults)
  into empty tables;
- `kept`: the same drain after `kept` jobs of a week's history were written with their
  events (bench/panel_fill.sql: the panel workload's studio-shaped rows; two events per
  job, as an enqueue and an outcome leave) and vacuumed.

Each drain reports jobs/s and, over the same interval, PostgreSQL CPU, worker CPU and WAL
per job (bench/peers/_peercommon.Cost). Then, in the kept database, the maintenance
leader's own prune (Queue.upkeep.prune, the batches it runs every PGCUE_PRUNE_INTERVAL)
deletes the oldest day: total seconds, the longest batch (each batch is one transaction,
so the longest time any row stays locked), WAL written, and dead rows left for autovacuum.
Table and index sizes before and after.

    make bench BENCH_ARGS="--only history --no-peers"                        # 10,000,000 kept
    make bench BENCH_ARGS="--only history --history-jobs 1000000 --no-peers"
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench import pgcue_bench as pb
from bench.peers import _peercommon as pc
from bench.soak import SIZES, TABLES
from pgcue.core import db
from pgcue.core.queue import Queue

HERE = Path(__file__).resolve().parent
TYPE = "bench-plain"  # pgcue's defaults: it sets nothing of its own
FIGURES = (
    "drain_per_s",
    "pg_cpu_us_per_job",
    "worker_cpu_us_per_job",
    "wal_bytes_per_job",
    "wal_fpi_per_job",
    "heap_pages_per_1000_jobs",
)
PRUNE_BATCH = 5000  # Queue.upkeep.prune's
# The drains' worker leads maintenance too: its pruner must leave the kept week alone.
KEEP_ALL = {"PGCUE_RETENTION_SECONDS": str(30 * 86400)}
HISTORY_TYPES = ["tts", "render", "generate", "resource-download"]  # the fill's rows; never claimed here

EVENTS_FILL = """
INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data, created_at)
SELECT j.id, j.channel_id, j.owner_id, 'job:status', e.data, e.at
FROM pgcue.jobs j
CROSS JOIN LATERAL (VALUES
    (jsonb_build_object('state', 'queued', 'attempt', 0, 'maxAttempts', j.max_attempts), j.created_at),
    (jsonb_build_object('state', j.state, 'attempt', j.attempts), coalesce(j.completed_at, j.updated_at))
) AS e(data, at)
ORDER BY j.id
"""


async def _sizes(conn: asyncpg.Connection) -> dict[str, Any]:
    await conn.execute("ANALYZE pgcue.jobs, pgcue.job_events")
    rows = await conn.fetch(SIZES, list(TABLES))
    return {
        r["table"]: {
            "total_bytes": r["total_bytes"],
            "heap_bytes": r["heap_bytes"],
            "index_bytes": r["index_bytes"],
            "dead_rows": r["dead_rows"] or 0,
        }
        for r in rows
    }


# Which relations' pages the drain's WAL logged whole: pg_walinspect reads the records
# between two LSNs; each block reference marked FPW is one full-page image of that page.
# The relation is named from the reference's relfilenode (rel <tablespace>/<db>/<node>).
FPI_BY_RELATION = """
SELECT coalesce(pg_filenode_relation(CASE WHEN b.spc = 1663 THEN 0 ELSE b.spc END, b.node)::text,
                'relfilenode ' || b.node) AS relation,
       b.fork, count(*) AS images, count(DISTINCT b.blk) AS pages
FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn) r,
     LATERAL (SELECT m[1]::oid AS spc, m[2]::oid AS node, m[3] AS fork, m[4]::bigint AS blk
              FROM regexp_matches(r.block_ref,
                   'rel (\\d+)/\\d+/(\\d+) fork (\\w+) blk (\\d+) \\(FPW\\)', 'g') AS m) b
WHERE r.fpi_length > 0
GROUP BY 1, 2
ORDER BY 3 DESC
LIMIT 8
"""


async def _fpi_by_relation(conn: asyncpg.Connection, lsn0: str, lsn1: str, jobs: int) -> list[dict[str, Any]]:
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    rows = await conn.fetch(FPI_BY_RELATION, lsn0, lsn1, timeout=600)
    return [
        {"relation": r["relation"], "fork": r["fork"], "per_job": r["images"] / jobs, "pages": r["pages"]} for r in rows
    ]


async def _drain(settings: Any, jobs: int) -> dict[str, Any]:
    workers = pb.Workers(settings, TYPE, 1, 50, KEEP_ALL)
    slot = None
    try:
        await asyncio.to_thread(workers.wait_started)
        conn = await db.connect(settings)
        try:
            # Both databases start right after a checkpoint, so each drain pays for the pages
            # it touches, not for whatever checkpoint debt the fill left behind.
            await conn.execute("CHECKPOINT", timeout=600)
            ids = await Queue(conn).enqueue_many(pb._noop_jobs(jobs, TYPE))
            committed = await conn.fetchval("SELECT clock_timestamp()")
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            cost = pc.Cost(workers.procs[0].pid, lambda: conn.fetchval("SELECT pg_current_wal_lsn()::text"), backend)
            fpi0 = await conn.fetchval("SELECT wal_fpi FROM pg_stat_wal")
            # A slot holds the drain's WAL until it has been read: a checkpoint during the
            # drain would otherwise recycle the segments pg_walinspect reads afterwards.
            slot = f"pgcue_bench_{backend}"
            lsn0 = await conn.fetchval("SELECT lsn::text FROM pg_create_physical_replication_slot($1, true)", slot)
            await cost.start()
            # Done when none of the type is queued or running (both are index probes:
            # counting completions would scan the kept history on every poll).
            deadline = time.monotonic() + max(120, jobs / 200)
            while await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pgcue.jobs WHERE type = $1 AND state IN ('queued', 'running'))", TYPE
            ):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the drain of {jobs} jobs did not finish")
                await asyncio.sleep(0.05)
            spent = await cost.stop(jobs)
            lsn1 = await conn.fetchval("SELECT pg_current_wal_flush_lsn()::text")
            # Full-page images: the first change of a page after a checkpoint logs the whole
            # 8 kB page, so a drain that touches more distinct pages writes more WAL.
            spent["wal_fpi_per_job"] = (await conn.fetchval("SELECT wal_fpi FROM pg_stat_wal") - fpi0) / jobs
            done, last = await conn.fetchrow(
                "SELECT count(*), max(completed_at) FROM pgcue.jobs WHERE id = ANY($1) AND state = 'completed'", ids
            )
            # Where their final versions live: into empty tables they fill pages at the
            # end; with history kept, the free space map may scatter them over old pages.
            pages = await conn.fetchval(
                "SELECT count(DISTINCT (ctid::text::point)[0]) FROM pgcue.jobs WHERE id = ANY($1)", ids
            )
            spent["heap_pages_per_1000_jobs"] = 1000 * pages / jobs
            spent["fpi_by_relation"] = await _fpi_by_relation(conn, lsn0, lsn1, jobs)
        finally:
            if slot is not None:  # never left behind: a slot keeps WAL forever
                await conn.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot
                )
            await conn.close()
    finally:
        workers.stop()
    if done != jobs:
        raise RuntimeError(f"{done} of {jobs} jobs completed")
    return {"drain_per_s": jobs / max((last - committed).total_seconds(), 1e-6), **spent}


async def _prune_a_day(settings: Any) -> dict[str, Any]:
    """The leader's prune with a retention of six days over a week of history: the oldest
    day goes, batch by batch, as the maintenance leader would delete it."""
    pool = await db.create_pool(settings, min_size=1, max_size=2)
    try:
        queue = Queue(pool)
        lsn0 = await pool.fetchval("SELECT pg_current_wal_lsn()::text")
        began, longest, deleted, batches = time.monotonic(), 0.0, 0, 0
        while True:  # Queue.upkeep.prune's loop, one batch (one transaction) timed at a time
            t0 = time.monotonic()
            row = await queue.sql.fetchrow(pool, "prune_jobs", 6 * 86400.0, PRUNE_BATCH)
            longest = max(longest, time.monotonic() - t0)
            n = int(row["deleted"]) if row else 0
            deleted += n
            batches += 1
            if n < PRUNE_BATCH:
                break
        seconds = time.monotonic() - began
        wal = await pool.fetchval("SELECT pg_current_wal_lsn() - $1::text::pg_lsn", lsn0)
    finally:
        await pool.close()
    return {
        "deleted": deleted,
        "calls": batches,
        "seconds": round(seconds, 2),
        "per_s": deleted / seconds if seconds else None,
        "longest_call_s": round(longest, 3),
        "wal_bytes_per_job": float(wal) / deleted if deleted else None,
    }


async def fill(conn: asyncpg.Connection, kept: int) -> None:
    """`kept` finished jobs of a week's history and their events, vacuumed."""
    await conn.execute((HERE / "panel_fill.sql").read_text(), kept, "bench-history", HISTORY_TYPES, timeout=7200)
    await conn.execute(EVENTS_FILL, timeout=7200)
    await conn.execute("VACUUM (ANALYZE) pgcue.jobs, pgcue.job_events", timeout=7200)


def heap_images_per_job(drain: dict[str, Any]) -> float:
    """The `jobs` heap's full-page images per job in a drain (_drain's pg_walinspect count)."""
    return next((x["per_job"] for x in drain.get("fpi_by_relation") or [] if x["relation"] == "pgcue.jobs"), 0.0)


async def history(base_dsn: str, kept: int = 10_000_000, jobs: int = 20_000, rounds: int = 3) -> dict[str, Any]:
    """`rounds` drains into each database, interleaved (empty, kept, empty, kept, …) so the
    machine's drift spreads over both; medians."""
    out: dict[str, Any] = {"kept": kept, "jobs": jobs, "type": TYPE, "rounds": rounds}
    async with pb.scratch_database(base_dsn) as empty, pb.scratch_database(base_dsn) as full:
        conn = await db.connect(full)
        try:
            print(f"  history: writing {kept:,} finished jobs and their events …", flush=True)
            began = time.monotonic()
            await fill(conn, kept)
            out["fill_seconds"] = round(time.monotonic() - began, 1)
            out["sizes_before"] = await _sizes(conn)
        finally:
            await conn.close()
        runs: dict[str, list[dict[str, Any]]] = {"empty": [], "kept_drain": []}
        for r in range(rounds):
            print(f"  history: round {r + 1}/{rounds}: a drain into empty tables, then with the history …", flush=True)
            runs["empty"].append(await _drain(empty, jobs))
            runs["kept_drain"].append(await _drain(full, jobs))
        for name, got in runs.items():
            out[name] = {f: statistics.median(x[f] for x in got) for f in FIGURES}
            out[name]["raw"] = got
        print("  history: pruning the oldest day …", flush=True)
        out["prune"] = await _prune_a_day(full)
        conn = await db.connect(full)
        try:
            out["sizes_after"] = await _sizes(conn)
        finally:
            await conn.close()
    e, k = out["empty"], out["kept_drain"]
    out["kept_to_empty"] = {f: (k[f] / e[f] if e.get(f) else None) for f in FIGURES}
    return out


def print_history(h: dict[str, Any]) -> None:
    print(
        f"\n  history kept: {h['kept']:,} finished jobs (written in {h['fill_seconds']:,.0f} s), then a drain of "
        f"{h['jobs']:,} no-op jobs at pgcue's defaults, against the same drain into empty tables "
        f"(medians of {h['rounds']} interleaved rounds)"
    )
    print(f"    {'figure':<26}{'empty':>12}{'kept':>12}{'kept / empty':>14}")
    for f in FIGURES:
        e, k, r = h["empty"].get(f), h["kept_drain"].get(f), h["kept_to_empty"].get(f)
        if e is not None and k is not None:
            digits = 3 if f == "wal_fpi_per_job" else 1
            print(f"    {f:<26}{e:>12,.{digits}f}{k:>12,.{digits}f}{(r or 0):>13.2f}×")
    # Round by round: the kept drains' extra cost is the history's free-space gaps being
    # used up (each takes one row version once), so it falls from round to round.
    print(
        f"    {'round':<8}{'PG µs empty':>12}{'PG µs kept':>12}{'kept / empty':>14}"
        f"{'jobs heap FPI/job':>19}{'pages/1000':>12}"
    )
    for i, (e, k) in enumerate(zip(h["empty"]["raw"], h["kept_drain"]["raw"], strict=True)):
        heap = heap_images_per_job(k)
        ratio = k["pg_cpu_us_per_job"] / e["pg_cpu_us_per_job"] if e["pg_cpu_us_per_job"] else 0.0
        print(
            f"    {i + 1:<8}{e['pg_cpu_us_per_job']:>12.1f}{k['pg_cpu_us_per_job']:>12.1f}{ratio:>13.2f}×"
            f"{heap:>19.3f}{k['heap_pages_per_1000_jobs']:>12.1f}"
        )
    for name in ("empty", "kept_drain"):
        fpi = h[name]["raw"][-1].get("fpi_by_relation") or []
        shown = ", ".join(f"{x['relation']} ({x['fork']}) {x['per_job']:.3f} on {x['pages']:,} pages" for x in fpi[:5])
        print(f"    full-page images per job by relation, {name}, last round: {shown or 'none'}")
    p = h["prune"]
    print(
        f"    prune of the oldest day: {p['deleted']:,} jobs in {p['seconds']:,.1f} s ({p['calls']} calls, the "
        f"longest {p['longest_call_s']:.3f} s), {p['wal_bytes_per_job'] or 0:,.0f} WAL bytes per job"
    )
    print(f"    {'':<22}{'total MB':>10}{'heap MB':>10}{'index MB':>10}{'dead (est.)':>12}")
    for when in ("sizes_before", "sizes_after"):
        for table, z in h[when].items():
            label = f"{table} {when.split('_')[1]}"
            print(
                f"    {label:<22}{z['total_bytes'] / 2**20:>10.1f}{z['heap_bytes'] / 2**20:>10.1f}"
                f"{z['index_bytes'] / 2**20:>10.1f}{z['dead_rows']:>12,}"
            )
