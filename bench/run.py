"""`make bench`: pgcue's figures, the raw-SQL ceiling and the peers, in one run, on one
PostgreSQL server. Each figure is the median of --repeat runs (min and max beside it).
Prints a table and writes bench/results/<time>.json.

    make bench                                   # defaults: 100,000-job drains, 3 runs each
    make bench BENCH_ARGS="--jobs 20000 --only drain,latency --no-peers"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import pgcue_bench as pb

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WORKLOADS = ("enqueue", "drain", "drain2", "latency", "ceiling")


def _collect(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: pb.summarise([r[k] for r in runs]) for k in keys}


async def run_pgcue(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    only = set(args.only)
    for name in WORKLOADS:
        if name not in only:
            continue
        runs = []
        for i in range(args.repeat):
            print(f"  pgcue {name} run {i + 1}/{args.repeat} …", file=sys.stderr, flush=True)
            if name == "enqueue":
                runs.append(await pb.enqueue(args.dsn))
            elif name == "drain":
                runs.append(await pb.drain(args.dsn, args.jobs, 1))
            elif name == "drain2":
                runs.append(await pb.drain(args.dsn, args.jobs, 2))
            elif name == "latency":
                runs.append(await pb.pickup_latency(args.dsn, args.latency_jobs))
            elif name == "ceiling":
                runs.append(await pb.ceiling(args.dsn, args.jobs))
        keys = tuple(k for k in runs[0] if k.endswith(("_per_s", "_ms")))
        out[name] = _collect(runs, keys)
    return out


def run_peers(args: argparse.Namespace) -> dict[str, Any]:
    script = HERE / "peers" / "run_peers.py"
    if not script.exists():
        return {"skipped": "bench/peers/run_peers.py is missing"}
    setup = HERE / "peers" / "setup.sh"
    if setup.exists():
        subprocess.run(["bash", str(setup)], check=False, timeout=900)
    cmd = [sys.executable, str(script), "--dsn", args.dsn, "--repeat", str(args.repeat), "--jobs", str(args.peer_jobs)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    except subprocess.TimeoutExpired:
        return {"skipped": "peers did not finish within an hour"}
    if done.returncode != 0:
        return {"skipped": f"peers failed: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout)


def _fmt(summary: dict[str, float] | None, unit: str = "") -> str:
    if not summary:
        return "—"
    return f"{summary['median']:,.1f}{unit} ({summary['min']:,.1f}–{summary['max']:,.1f})"


def print_table(result: dict[str, Any]) -> None:
    p = result["pgcue"]
    rows = [
        ("bulk enqueue 10k, jobs/s", p.get("enqueue", {}).get("bulk_10000_per_s")),
        ("bulk enqueue 100k, jobs/s", p.get("enqueue", {}).get("bulk_100000_per_s")),
        ("single enqueue, jobs/s (one connection)", p.get("enqueue", {}).get("single_per_s")),
        (f"drain {result['jobs']:,} no-op jobs, 1 process, jobs/s", p.get("drain", {}).get("drain_per_s")),
        (f"drain {result['jobs']:,} no-op jobs, 2 processes, jobs/s", p.get("drain2", {}).get("drain_per_s")),
        ("pickup latency p50, ms", p.get("latency", {}).get("p50_ms")),
        ("pickup latency p95, ms", p.get("latency", {}).get("p95_ms")),
        ("pickup latency p99, ms", p.get("latency", {}).get("p99_ms")),
        ("ceiling: PL/pgSQL drain, jobs/s", p.get("ceiling", {}).get("drain_per_s")),
        ("ceiling: plain INSERT, jobs/s", p.get("ceiling", {}).get("insert_per_s")),
    ]
    print(f"\npgcue — median of {result['repeat']} (min–max)")
    for label, summary in rows:
        if summary:
            print(f"  {label:<48} {_fmt(summary)}")
    drain = p.get("drain", {}).get("drain_per_s")
    ceil = p.get("ceiling", {}).get("drain_per_s")
    if drain and ceil:
        print(f"  {'drain as a fraction of the ceiling':<48} {drain['median'] / ceil['median']:.2f}")
    peers = result.get("peers") or {}
    if "skipped" in peers:
        print(f"\npeers skipped: {peers['skipped']}")
        return
    for peer, data in sorted(peers.get("peers", peers).items()):
        if not isinstance(data, dict):
            continue
        print(f"\n{peer}: {json.dumps(data)[:400]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--dsn",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a server where the bench may create and drop databases",
    )
    ap.add_argument("--jobs", type=int, default=100_000, help="jobs per drain")
    ap.add_argument("--peer-jobs", type=int, default=20_000, help="jobs per peer drain")
    ap.add_argument("--latency-jobs", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--only",
        type=lambda s: s.split(","),
        default=list(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)}",
    )
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args(argv)
    unknown = set(args.only) - set(WORKLOADS)
    if unknown:
        ap.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    started = time.time()
    result: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "jobs": args.jobs,
        "repeat": args.repeat,
        "pgcue": asyncio.run(run_pgcue(args)),
    }
    if not args.no_peers:
        result["peers"] = run_peers(args)
    result["seconds"] = round(time.time() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result, indent=2))
    print_table(result)
    print(f"\nwritten to {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
