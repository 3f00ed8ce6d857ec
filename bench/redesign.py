"""What the hot-table redesign would cost PostgreSQL, measured before it is built.

The claim-and-finish row work of three designs, each drained in PL/pgSQL (bench/redesign.sql:
no client, no fair claim, no notifications) from the same 16-channel backlog, beside
pgqueuer's whole tuned drain and pgcue's (each its own worker, bench/equal.py's `tuned`
setting), rounds interleaved, in one invocation:

- `today`: pgcue.jobs as it is, with the event row per job a claim and a completion write;
- `proto_job_events`: the narrow proto.queue (HOT claims, a finish deletes the row) and
  the record proto.jobs written once at the end, with today's event row per job;
- `proto`: the same with one event row per channel per statement (proto.events).

A PL/pgSQL drain is a floor for the design's real drain (a worker adds round trips, the
fair claim and notifications): if a design's floor is above pgqueuer's whole drain, the
design cannot bring pgcue's PostgreSQL CPU per job below pgqueuer's. How much a worker adds
is measured too (pgcue's worker drain against today's floor), and the prototype's worker
drain projected at the same ratio.

    python -m bench.redesign --jobs 20000 --rounds 3
    python -m bench.redesign --jobs 20000 --rounds 3 --no-peer    # without pgqueuer

What the prototype leaves out, and a real design would have to pay for: the panel's
listing of running jobs (here a join of proto.queue to the record), the job stream's
lookup of a job's events among batch rows, rescue of expired leases (a scan of the small
queue table), and moving today's rows in a migration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import equal
from bench import pgcue_bench as pb
from bench.peers import _peercommon as pc
from pgcue.core import db

HERE = Path(__file__).resolve().parent
FILL = {
    "today": [
        "INSERT INTO pgcue.jobs (type, channel_id, owner_id) "
        "SELECT 'bench-noop', 'ch-' || (g % 16), 'u' FROM generate_series(1, $1) g",
    ],
    "proto": [
        "INSERT INTO proto.jobs (type, channel_id, owner_id) "
        "SELECT 'bench-noop', 'ch-' || (g % 16), 'u' FROM generate_series(1, $1) g",
        "INSERT INTO proto.queue (id, type, channel_id, priority, run_at, created_at) "
        "SELECT id, type, channel_id, priority, run_at, created_at FROM proto.jobs",
    ],
}
DRAIN = {
    "today": ("today", "CALL public.bench_today_drain({batch})"),
    "proto_job_events": ("proto", "CALL public.bench_proto_drain({batch}, true)"),
    "proto": ("proto", "CALL public.bench_proto_drain({batch}, false)"),
}


async def drain(dsn: str, jobs: int, variant: str, batch: int) -> dict[str, Any]:
    fill, call = DRAIN[variant]
    async with pb.scratch_database(dsn) as settings:
        conn = await db.connect(settings)
        try:
            await conn.execute((HERE / "redesign.sql").read_text())
            for statement in FILL[fill]:
                await conn.execute(statement, *((jobs,) if "$1" in statement else ()))
            await conn.execute("ANALYZE")
            lsn0 = await conn.fetchval("SELECT pg_current_wal_lsn()")
            cpu0, t0 = pc.pg_cpu_seconds(), time.perf_counter()
            await conn.execute(call.format(batch=int(batch)))
            drain_s, cpu1 = time.perf_counter() - t0, pc.pg_cpu_seconds()
            wal = await conn.fetchval("SELECT pg_current_wal_lsn() - $1::pg_lsn", lsn0)
            table = "pgcue.jobs" if fill == "today" else "proto.jobs"
            left = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE state <> 'completed'")
            assert left == 0, f"{variant}: {left} jobs left undrained"
            events = await conn.fetchval(
                "SELECT (SELECT count(*) FROM pgcue.job_events) + (SELECT count(*) FROM proto.events)"
            )
        finally:
            await conn.close()
    return {
        "drain_per_s": jobs / drain_s,
        "pg_cpu_us_per_job": 1e6 * (cpu1 - cpu0) / jobs,
        "wal_bytes_per_job": float(wal) / jobs,
        "event_rows_per_job": events / jobs,
    }


async def run(dsn: str, jobs: int, rounds: int, batch: int, peer: bool) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in DRAIN}
    runs["pgcue_tuned"] = []
    if peer:
        runs["pgqueuer_tuned"] = []
    for r in range(rounds):
        for variant in DRAIN:
            print(f"  round {r + 1}/{rounds}: {variant} …", flush=True)
            runs[variant].append(await drain(dsn, jobs, variant, batch))
        print(f"  round {r + 1}/{rounds}: pgcue tuned …", flush=True)
        runs["pgcue_tuned"].append(await equal.pgcue_drain(dsn, jobs, "tuned"))
        if peer:
            print(f"  round {r + 1}/{rounds}: pgqueuer tuned …", flush=True)
            runs["pgqueuer_tuned"].append(await asyncio.to_thread(equal.pgqueuer_drain, dsn, jobs, "tuned", 600.0))
    return runs


def table(runs: dict[str, list[dict[str, Any]]]) -> str:
    peer = runs.get("pgqueuer_tuned")
    peer_cpu = statistics.median(r["pg_cpu_us_per_job"] for r in peer) if peer else None
    lines = [
        "| design | drain jobs/s | PostgreSQL CPU µs/job (min–max) | WAL bytes/job | event rows/job "
        "| CPU / pgqueuer tuned |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, got in runs.items():
        cpu = [r["pg_cpu_us_per_job"] for r in got]
        med = statistics.median(cpu)
        ratio = f"{med / peer_cpu:.2f}×" if peer_cpu else "—"
        rows = statistics.median(r["event_rows_per_job"] for r in got) if "event_rows_per_job" in got[0] else None
        rate = statistics.median(r["drain_per_s"] for r in got)
        lines.append(
            f"| {name} | {rate:,.0f} | {med:.1f} ({min(cpu):.1f}–{max(cpu):.1f}) "
            f"| {statistics.median(r['wal_bytes_per_job'] for r in got):,.0f} "
            f"| {'—' if rows is None else f'{rows:.2f}'} | {ratio} |"
        )
    today, worker = (statistics.median(r["pg_cpu_us_per_job"] for r in runs[k]) for k in ("today", "pgcue_tuned"))
    proto = statistics.median(r["pg_cpu_us_per_job"] for r in runs["proto"])
    lines.append(
        f"\npgcue's worker drain costs PostgreSQL {worker / today:.2f}× today's PL/pgSQL floor (the fair claim, "
        "statements from a client, notifications, the completion's result columns)."
    )
    if peer_cpu:
        lines.append(
            f"At that ratio the prototype's worker drain would cost {proto * worker / today:.1f} µs a job, "
            f"{proto * worker / today / peer_cpu:.2f}× pgqueuer's tuned (a projection, not a measurement)."
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=500, help="jobs per claim (the equal bench's tuned batch)")
    p.add_argument("--no-peer", action="store_true", help="leave pgqueuer's tuned drain out")
    args = p.parse_args()
    peer = not args.no_peer and equal.PGQ_PYTHON.exists()
    runs = asyncio.run(run(args.dsn, args.jobs, args.rounds, args.batch, peer))
    print(f"\n{args.jobs:,} jobs, {args.batch} per claim, medians of {args.rounds} interleaved rounds")
    print(table(runs))
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    path = results / f"redesign-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps({"jobs": args.jobs, "batch": args.batch, "runs": runs}, indent=1, default=str))
    print(f"\nwritten to {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
