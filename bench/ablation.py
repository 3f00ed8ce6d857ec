"""What each part of the schema costs a drain: the `equal` drain (one worker process,
no-op jobs of `bench-plain`) into a scratch database from which one part was taken away
before the workers start. Not a configuration anyone should run: a measuring tool for the
next schema change (docs/benchmarks.md, "What reaching the targets would take").

    python -m bench.ablation --jobs 50000 --rounds 2 --setting tuned
    python -m bench.ablation --variants base,no_events --setting defaults
    python -m bench.ablation --ceiling --jobs 20000 --rounds 3 --variants base,floor

With `--ceiling`, each variant runs the PL/pgSQL ceiling (bench/ceiling.sql: the claim and
completion row work alone, no events, no fair claim, no client) instead of the worker's
drain: what the table and its indexes cost PostgreSQL by themselves.

Variants (rounds interleaved; medians):
- `base`: the schema as it is;
- `no_events`: every job_events insert dropped by a BEFORE INSERT trigger (what a state
  change would cost without its event row, less the trigger's own small cost);
- `no_event_indexes`: job_events without its channel, job and tx indexes;
- `with_channel_index`: with jobs_channel_idx, the listing index migration 0010 dropped
  (what that change saved);
- `no_listing_index`: without the panel's jobs_channel_type_state_idx;
- `no_finished_indexes`: without jobs_finished_idx and jobs_channel_completed_idx;
- `floor`: no event rows and none of those three jobs indexes: what is left is the primary
  key, the claim and lease indexes and the row itself.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

from bench import pgcue_bench as pb

DROP_EVENTS = [
    "CREATE FUNCTION pgcue.bench_drop_event() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$",
    "CREATE TRIGGER bench_drop_event BEFORE INSERT ON pgcue.job_events "
    "FOR EACH ROW EXECUTE FUNCTION pgcue.bench_drop_event()",
]
FINISHED = ["DROP INDEX pgcue.jobs_finished_idx", "DROP INDEX pgcue.jobs_channel_completed_idx"]
LISTING = ["DROP INDEX pgcue.jobs_channel_type_state_idx"]
VARIANTS: dict[str, list[str]] = {
    "base": [],
    "no_events": DROP_EVENTS,
    "no_event_indexes": [
        "DROP INDEX pgcue.job_events_channel_idx",
        "DROP INDEX pgcue.job_events_job_idx",
        "DROP INDEX pgcue.job_events_tx_idx",
    ],
    "with_channel_index": ["CREATE INDEX jobs_channel_idx ON pgcue.jobs (channel_id, created_at DESC, id DESC)"],
    "no_listing_index": LISTING,
    "no_finished_indexes": FINISHED,
    "floor": DROP_EVENTS + LISTING + FINISHED,
}
SETTINGS = {"defaults": (50, None), "tuned": (1000, 500)}
FIGURES = ("drain_per_s", "pg_cpu_us_per_job", "worker_cpu_us_per_job", "wal_bytes_per_job")


async def drain(dsn: str, jobs: int, variant: str, setting: str) -> dict[str, Any]:
    concurrency, batch = SETTINGS[setting]
    env = {"PGCUE_CLAIM_BATCH": str(batch)} if batch else {}
    return await pb.drain(dsn, jobs, 1, concurrency, job_type="bench-plain", env=env, prepare=VARIANTS[variant])


CEILING_FIGURES = ("drain_per_s", "pg_cpu_us_per_job")


async def run(
    dsn: str, jobs: int, rounds: int, variants: list[str], setting: str, ceiling: bool = False
) -> dict[str, dict[str, float]]:
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for _ in range(rounds):
        for v in variants:
            if ceiling:
                runs[v].append(await pb.ceiling(dsn, jobs, prepare=VARIANTS[v]))
            else:
                runs[v].append(await drain(dsn, jobs, v, setting))
    figures = CEILING_FIGURES if ceiling else FIGURES
    return {v: {f: statistics.median(r[f] for r in got) for f in figures} for v, got in runs.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--jobs", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--setting", choices=sorted(SETTINGS), default="tuned")
    p.add_argument("--variants", type=lambda s: s.split(","), default=list(VARIANTS))
    p.add_argument("--ceiling", action="store_true", help="the PL/pgSQL ceiling instead of the worker's drain")
    args = p.parse_args()
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variant(s): {', '.join(sorted(unknown))}")
    got = asyncio.run(run(args.dsn, args.jobs, args.rounds, args.variants, args.setting, args.ceiling))
    shown = CEILING_FIGURES if args.ceiling else FIGURES
    what = "the ceiling" if args.ceiling else args.setting
    print(f"| variant ({what}, {args.jobs:,} jobs, medians of {args.rounds}) | " + " | ".join(shown) + " |")
    print("|---|" + "---:|" * len(shown))
    for v, figures in got.items():
        print(f"| {v} | " + " | ".join(f"{figures[f]:,.1f}" for f in shown) + " |")


if __name__ == "__main__":
    main()
