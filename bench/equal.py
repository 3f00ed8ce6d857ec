"""Drains at equal settings: pgcue and pgqueuer side by side, in one invocation, rounds
interleaved (each round runs every system at every setting once, so the machine's drift
spreads over all of them), medians over the rounds.

One worker process each, no-op jobs. Two settings, the same for both systems:
- `defaults`: 50 handlers at once, everything else each system's default (pgcue: type
  `bench-plain`, which sets nothing; pgqueuer: batch_size 10).
- `tuned`: 1,000 handlers at once, 500 jobs per claim (pgcue PGCUE_CLAIM_BATCH=500;
  pgqueuer batch_size 500).

Each drain reports jobs/s, and over the same interval (bench/peers/_peercommon.Cost) the
CPU PostgreSQL spent per job (every postgres process on the machine: nothing else may use
the server meanwhile), the worker process's CPU per job and WAL bytes per job. The raw
SQL ceiling (bench/ceiling.sql: the same claim/complete cycle in PL/pgSQL, no client)
runs in each round as the machine's calibration figure.

    make bench BENCH_ARGS="--only equal --jobs 20000 --repeat 3"
    python -m bench.equal --jobs 20000 --repeat 3      # the same, on its own

pgqueuer comes from bench/.venvs/pgqueuer (bash bench/peers/setup.sh pgqueuer); without
it pgqueuer is reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import pgcue_bench as pb

HERE = Path(__file__).resolve().parent
PGQ_PYTHON = HERE / ".venvs" / "pgqueuer" / "bin" / "python"
SETTINGS: dict[str, dict[str, Any]] = {
    "defaults": {"concurrency": 50, "batch": None},
    "tuned": {"concurrency": 1000, "batch": 500},
}
FIGURES = ("drain_per_s", "pg_cpu_us_per_job", "worker_cpu_us_per_job", "wal_bytes_per_job")


async def pgcue_drain(dsn: str, jobs: int, setting: str) -> dict[str, Any]:
    s = SETTINGS[setting]
    env = {"PGCUE_CLAIM_BATCH": str(s["batch"])} if s["batch"] else {}
    return await pb.drain(dsn, jobs, 1, int(s["concurrency"]), job_type="bench-plain", env=env)


def pgqueuer_drain(dsn: str, jobs: int, setting: str, timeout: float) -> dict[str, Any]:
    s = SETTINGS[setting]
    env = dict(os.environ, BENCH_PGQ_MAX_CONCURRENT=str(s["concurrency"]))
    if s["batch"]:
        env["BENCH_PGQ_BATCH_SIZE"] = str(s["batch"])
    else:
        env["BENCH_PGQ_BATCH_SIZE"] = "10"  # pgqueuer's own default (the script's is tuned)
    argv = [str(PGQ_PYTHON), str(HERE / "peers" / "pgqueuer_bench.py"), "--dsn", dsn, "--jobs", str(jobs)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"pgqueuer drain failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result.get("result", result)


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
    return statistics.median(values) if values else None


async def run(dsn: str, jobs: int, repeat: int, timeout: float = 600.0) -> dict[str, Any]:
    systems = ["pgcue"] + (["pgqueuer"] if PGQ_PYTHON.exists() else [])
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {s: {k: [] for k in SETTINGS} for s in systems}
    ceiling: list[dict[str, Any]] = []
    for r in range(repeat):
        print(f"  equal round {r + 1}/{repeat}: ceiling …", file=sys.stderr, flush=True)
        ceiling.append(await pb.ceiling(dsn, jobs))
        for setting in SETTINGS:
            for system in systems:
                print(f"  equal round {r + 1}/{repeat}: {system} {setting} …", file=sys.stderr, flush=True)
                if system == "pgcue":
                    runs[system][setting].append(await pgcue_drain(dsn, jobs, setting))
                else:
                    runs[system][setting].append(await asyncio.to_thread(pgqueuer_drain, dsn, jobs, setting, timeout))
    out: dict[str, Any] = {
        "jobs": jobs,
        "repeat": repeat,
        "settings": SETTINGS,
        "ceiling_drain_per_s": statistics.median(c["drain_per_s"] for c in ceiling),
        "ceiling_pg_cpu_us_per_job": statistics.median(c["pg_cpu_us_per_job"] for c in ceiling),
        "skipped": {}
        if "pgqueuer" in systems
        else {"pgqueuer": f"no {PGQ_PYTHON} (bash bench/peers/setup.sh pgqueuer)"},
        "median": {s: {k: {f: _median(v, f) for f in FIGURES} for k, v in by.items()} for s, by in runs.items()},
        "raw": runs,
        "raw_ceiling": ceiling,
    }
    return out


def table(out: dict[str, Any]) -> str:
    med = out["median"]
    lines = [
        f"drains at equal settings, {out['jobs']:,} no-op jobs, one worker process, medians of {out['repeat']} "
        f"interleaved rounds; calibration: the raw SQL ceiling {out['ceiling_drain_per_s']:,.0f} jobs/s",
        "| setting | figure | pgcue | pgqueuer | pgcue / pgqueuer |",
        "|---|---|---:|---:|---:|",
    ]
    for setting in SETTINGS:
        for fig in FIGURES:
            a = med["pgcue"][setting][fig]
            b = med.get("pgqueuer", {}).get(setting, {}).get(fig)
            ratio = f"{a / b:.2f}×" if a and b else "—"
            lines.append(f"| {setting} | {fig} | {_fmt(a)} | {_fmt(b)} | {ratio} |")
    tuned = med["pgcue"]["tuned"]["drain_per_s"]
    plain = med["pgcue"]["defaults"]["drain_per_s"]
    if tuned and plain:
        lines.append(f"pgcue at its defaults reaches {100 * plain / tuned:.0f} % of pgcue tuned")
    per = [
        f"{setting} {_median(out['raw']['pgcue'][setting], 'jobs_per_claim') or 0:,.0f} / "
        f"{_median(out['raw']['pgcue'][setting], 'jobs_per_completion') or 0:,.0f}"
        for setting in SETTINGS
        if out["raw"]["pgcue"].get(setting)
    ]
    lines.append("pgcue jobs per claim / per completion statement: " + ", ".join(per))
    ceiling_cpu = out.get("ceiling_pg_cpu_us_per_job")
    peer_cpu = med.get("pgqueuer", {}).get("tuned", {}).get("pg_cpu_us_per_job")
    if ceiling_cpu:
        against = f", {ceiling_cpu / peer_cpu:.2f}× pgqueuer's tuned" if peer_cpu else ""
        lines.append(
            f"the ceiling's PostgreSQL CPU per job (pgcue's rows, claimed and completed in PL/pgSQL: no events, "
            f"no fair claim, no client): {ceiling_cpu:.1f} µs{against}"
        )
    for peer, why in out["skipped"].items():
        lines.append(f"{peer} skipped: {why}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", default=os.environ.get("PGCUE_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--json", metavar="FILE", help="also write every run's figures here")
    args = p.parse_args()
    out = asyncio.run(run(args.dsn, args.jobs, args.repeat, args.timeout))
    print(table(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
