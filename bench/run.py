"""`make bench`: pgcue's figures, the raw-SQL ceiling and the peers, in one run, on one
PostgreSQL server. Each figure is the median of --repeat runs (min and max beside it).
Prints a table and writes bench/results/<time>.json.

    make bench                                   # defaults: 100,000-job drains, 3 runs each
    make bench BENCH_ARGS="--jobs 20000 --only drain,latency --no-peers"
    make bench BENCH_ARGS="--only http,sse --no-peers"  # the API: needs wrk (or uses an asyncio client)
    make bench BENCH_ARGS="--only soak --soak-jobs 50000 --no-peers"  # the soak runs only when asked
    make bench BENCH_ARGS="--only panel --no-peers"   # the Jobs panel's pages over 5,000,000 jobs (--panel-jobs)
    make bench BENCH_ARGS="--only equal --peer-jobs 20000 --repeat 3"  # pgcue and pgqueuer at equal settings
    make bench BENCH_ARGS="--only history --no-peers"  # drains with 10,000,000 finished jobs kept, a day pruned
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import api_bench, equal, history, panel_bench, soak
from bench import pgcue_bench as pb

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# --repeat runs each of these
WORKLOADS = ("enqueue", "drain", "drain2", "latency", "latency_load", "ceiling", "fairness", "http", "sse")
ONCE = ("equal",)  # runs by default, once: its own --repeat interleaved rounds
OPTIONAL = ("soak", "panel", "history")  # long: only with --soak, --panel, --history (or their -jobs), or --only


def _collect(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {k: pb.summarise([r[k] for r in runs]) for k in keys}
    out["raw"] = runs
    return out


async def run_pgcue(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    only = set(args.only)
    for name in WORKLOADS:
        if name not in only:
            continue
        if name == "http":
            print(f"  http load generator: {_http_client(args)}", file=sys.stderr, flush=True)
        try:
            out[name] = await _workload(args, name)
        except Exception as exc:  # one broken workload must not lose every other figure
            print(f"  pgcue {name} failed: {exc!r}", file=sys.stderr, flush=True)
            out[name] = {"failed": repr(exc)}
    for name, run in (("equal", _equal), ("panel", _panel), ("soak", _soak), ("history", _history)):
        if name in only:
            try:
                out[name] = await run(args)
            except Exception as exc:
                print(f"  pgcue {name} failed: {exc!r}", file=sys.stderr, flush=True)
                out[name] = {"failed": repr(exc)}
    return out


async def _equal(args: argparse.Namespace) -> dict[str, Any]:
    """Its own interleaved rounds (bench/equal.py), --repeat of them."""
    if not equal.PGQ_PYTHON.exists() and not args.no_peers:
        subprocess.run(["bash", str(HERE / "peers" / "setup.sh"), "pgqueuer"], check=False, timeout=900)
    return await equal.run(args.dsn, args.peer_jobs, args.repeat, timeout=600.0)


async def _panel(args: argparse.Namespace) -> dict[str, Any]:
    """Once: the fill is the long part."""
    print(f"  pgcue panel: {args.panel_jobs:,} jobs …", file=sys.stderr, flush=True)
    return await panel_bench.panel(args.dsn, args.panel_jobs, seconds=args.panel_seconds, clients=args.panel_clients)


async def _soak(args: argparse.Namespace) -> dict[str, Any]:
    """Once, whatever --repeat says: it is the long run."""
    print(f"  pgcue soak: {args.soak_jobs:,} jobs …", file=sys.stderr, flush=True)
    return await soak.soak(args.dsn, args.soak_jobs, args.soak_processes)


async def _history(args: argparse.Namespace) -> dict[str, Any]:
    """Once: writing the kept history is the long part."""
    print(f"  pgcue history: {args.history_jobs:,} finished jobs kept …", file=sys.stderr, flush=True)
    return await history.history(args.dsn, args.history_jobs, min(args.jobs, 20_000), args.history_rounds)


async def _workload(args: argparse.Namespace, name: str) -> dict[str, Any]:
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
        elif name == "latency_load":
            runs.append(await pb.pickup_latency_under_load(args.dsn, args.latency_jobs))
        elif name == "ceiling":
            runs.append(await pb.ceiling(args.dsn, args.jobs))
        elif name == "fairness":
            runs.append(await pb.fairness(args.dsn, min(args.jobs, 20_000)))
        elif name == "http":
            runs.append(
                await api_bench.http_enqueue(
                    args.dsn,
                    seconds=args.http_seconds,
                    warmup=args.http_warmup,
                    connections=args.http_connections,
                    client=args.http_client,
                )
            )
        elif name == "sse":
            runs.append(
                await api_bench.sse_fanout(
                    args.dsn, args.sse_subscribers, args.sse_jobs, args.sse_gap, processes=args.sse_api_processes
                )
            )
    keys = tuple(k for k in runs[0] if k.endswith(("_per_s", "_ms", "_pct", "_mb")))
    return _collect(runs, keys)


def _http_client(args: argparse.Namespace) -> str:
    if args.http_client == "asyncio" or (args.http_client == "auto" and not api_bench.wrk_path()):
        why = "asked for" if args.http_client == "asyncio" else "wrk not found; apt-get install -y wrk to use it"
        return f"asyncio client ({why})"
    return f"wrk ({api_bench.wrk_path()})"


def run_peers(args: argparse.Namespace) -> dict[str, Any]:
    script = HERE / "peers" / "run_peers.py"
    if not script.exists():
        return {"skipped": "bench/peers/run_peers.py is missing"}
    setup = HERE / "peers" / "setup.sh"
    if setup.exists():
        subprocess.run(["bash", str(setup)], check=False, timeout=900)
    cmd = [sys.executable, str(script), "--dsn", args.dsn, "--repeat", str(args.repeat), "--jobs", str(args.peer_jobs)]
    if args.peers:
        cmd += ["--peers", args.peers]
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
        ("pickup under load (another type draining) p50, ms", p.get("latency_load", {}).get("p50_ms")),
        ("pickup under load (another type draining) p99, ms", p.get("latency_load", {}).get("p99_ms")),
        ("ceiling: PL/pgSQL drain, jobs/s", p.get("ceiling", {}).get("drain_per_s")),
        ("ceiling: plain INSERT, jobs/s", p.get("ceiling", {}).get("insert_per_s")),
        ("claim+complete, fair (16 channels), jobs/s", p.get("fairness", {}).get("fair_per_s")),
        ("claim+complete, fairness off, jobs/s", p.get("fairness", {}).get("fifo_per_s")),
        ("fair as % of fairness off", p.get("fairness", {}).get("fair_to_fifo_pct")),
    ]
    print(f"\npgcue — median of {result['repeat']} (min–max)")
    for label, summary in rows:
        if summary:
            print(f"  {label:<48} {_fmt(summary)}")
    load_runs = p.get("latency_load", {}).get("raw") or []
    if load_runs and not all(r["drained_meanwhile"] for r in load_runs):
        print(f"  {'(under load: the drain ended before the last pickup in some runs)':<48}")
    drain = p.get("drain", {}).get("drain_per_s")
    ceil = p.get("ceiling", {}).get("drain_per_s")
    if drain and ceil:
        print(f"  {'drain as a fraction of the ceiling':<48} {drain['median'] / ceil['median']:.2f}")
    _print_api(p)
    if "soak" in p and "failed" not in p["soak"]:
        _print_soak(p["soak"])
    if "panel" in p and "failed" not in p["panel"]:
        panel_bench.print_panel(p["panel"])
    if "history" in p and "failed" not in p["history"]:
        history.print_history(p["history"])
    if "equal" in p and "failed" not in p["equal"]:
        print("\n" + equal.table(p["equal"]))
    _print_peers(result)
    for name, got in p.items():
        if isinstance(got, dict) and "failed" in got:
            print(f"\n{name} FAILED: {got['failed']}")


def _print_peers(result: dict[str, Any]) -> None:
    """pgcue beside each peer on the same server in the same run, with pgcue/peer ratios."""
    peers = result.get("peers") or {}
    if peers.get("skipped"):
        print(f"\npeers skipped: {peers['skipped']}")
        return
    heads: dict[str, dict[str, float]] = peers.get("headline_medians") or {}
    if not heads:
        return
    drain = result["pgcue"].get("drain", {})
    latency = result["pgcue"].get("latency", {})
    costs = {
        key: statistics.median(r[key] for r in drain["raw"]) if drain.get("raw") and key in drain["raw"][0] else None
        for key in ("pg_cpu_us_per_job", "worker_cpu_us_per_job", "wal_bytes_per_job")
    }
    ours = {
        "drain_per_s": (drain.get("drain_per_s") or {}).get("median"),
        **costs,
        "enqueue_per_s": (drain.get("enqueue_per_s") or {}).get("median"),
        "p50_ms": (latency.get("p50_ms") or {}).get("median"),
        "p99_ms": (latency.get("p99_ms") or {}).get("median"),
    }
    names = sorted(heads)
    print(
        "\npgcue and the peers, same server, same run (medians; ratio = pgcue / peer: "
        "above 1 is better for rates, below 1 for CPU, WAL and latency)"
    )
    print(f"  {'':<34}{'pgcue':>10}" + "".join(f"{n:>24}" for n in names))
    for label, key in (
        ("drain, 1 worker process, jobs/s", "drain_per_s"),
        ("  PostgreSQL CPU per job, µs", "pg_cpu_us_per_job"),
        ("  worker CPU per job, µs", "worker_cpu_us_per_job"),
        ("  WAL per job, bytes", "wal_bytes_per_job"),
        ("bulk enqueue (the drain's), jobs/s", "enqueue_per_s"),
        ("pickup latency p50, ms", "p50_ms"),
        ("pickup latency p99, ms", "p99_ms"),
    ):
        mine = ours[key]
        cells = []
        for n in names:
            theirs = heads[n].get(key)
            if theirs is None:
                cells.append(f"{'—':>24}")
            elif mine is None or not theirs:
                cells.append(f"{theirs:>24,.1f}")
            else:
                cells.append(f"{f'{theirs:,.1f} ({mine / theirs:.2f}×)':>24}")
        print(f"  {label:<34}{'—' if mine is None else f'{mine:,.1f}':>10}" + "".join(cells))


def _print_api(p: dict[str, Any]) -> None:
    http, sse = (got if got and "failed" not in got else None for got in (p.get("http"), p.get("sse")))
    if http:
        raw = http["raw"]
        client, conns = raw[0]["client"], raw[0]["connections"]
        print(f"\n  HTTP enqueue: POST /api/jobs, one API process, {client}, {conns} connections")
        for label, key in (
            ("requests/s (201s)", "requests_per_s"),
            ("latency p50, ms", "p50_ms"),
            ("latency p99, ms", "p99_ms"),
            ("API process CPU, % of a core", "server_cpu_pct"),
            ("client CPU, % of a core", "client_cpu_pct"),
        ):
            if key in http:
                print(f"    {label:<46} {_fmt(http[key])}")
        bad = [r for r in raw if not r["all_201"]]
        stored = all(r.get("stored_matches_201s", True) for r in raw)
        verdict = "yes" if not bad else "NO: " + json.dumps([[r["other_statuses"], r["socket_errors"]] for r in bad])
        if not stored:
            verdict += " (the jobs stored do not match the 201s!)"
        print(f"    {'every response 201':<46} {verdict}")
    if sse:
        raw = sse["raw"]
        r0 = raw[0]
        n = r0.get("api_processes", 1)
        print(
            f"\n  SSE fan-out: {r0['subscribers']:,} subscribers on one channel stream, "
            f"{r0['status_events']} status events ({r0['jobs']} echo jobs {r0['gap_s'] * 1000:.0f} ms apart), "
            + ("one API process" if n == 1 else f"{n} API processes sharing them (CPU summed, RSS the largest)")
        )
        for label, key in (
            ("state change → received by all, p50 ms", "all_p50_ms"),
            ("state change → received by all, p99 ms", "all_p99_ms"),
            ("  p99 of the queued changes only", "all_p99_queued_ms"),
            ("  p99 of the running changes only", "all_p99_running_ms"),
            ("  p99 of the completed changes only", "all_p99_completed_ms"),
            ("state change → one delivery, p50 ms", "delivery_p50_ms"),
            ("state change → one delivery, p99 ms", "delivery_p99_ms"),
            ("API process CPU, % of a core", "server_cpu_pct"),
            ("API process RSS, all connected, MB", "server_rss_connected_mb"),
            ("API process peak RSS, MB", "server_peak_rss_mb"),
            ("client CPU, % of a core", "client_cpu_pct"),
            ("client event-loop lag p99, ms", "client_loop_lag_p99_ms"),
        ):
            print(f"    {label:<46} {_fmt(sse[key])}")
        missing = sum(r["missing_deliveries"] + r["bad_http_status"] + r["cut_off_too_slow"] for r in raw)
        print(
            f"    {'every event delivered to every subscriber':<46} {'yes' if not missing else f'NO ({missing} lost)'}"
        )
        print(
            "    (the subscribers run in this process, on the same two cores as the server and PostgreSQL;"
            " its CPU and loop lag say whether the client could be the limit)"
        )


def _print_soak(s: dict[str, Any]) -> None:
    print(
        f"\n  soak: {s['jobs']:,} no-op jobs enqueued in batches of {s['batch']:,} "
        f"({s['enqueue_per_s']:,.0f} jobs/s), drained by {s['processes']} process(es) at {s['drain_per_s']:,.0f} jobs/s"
    )
    print("    slice   jobs/s")
    for sl in s["slices"]:
        print(f"    {sl['slice'] * 10 - 10:>3}–{sl['slice'] * 10}%  {sl['per_s']:>10,.0f}")
    verdict = "yes" if s["last_within_25pct"] else "NO"
    print(f"    last slice / first slice: {s['last_to_first']:.2f} — no more than 25% slower: {verdict}")
    gaps = ", ".join(f"{g['seconds']:.3f} s at {g['at_pct']:.0f}%" for g in s.get("longest_gaps", []))
    print(f"    longest pauses between completions: {gaps}")
    print(f"    {'':<22}{'total MB':>10}{'heap MB':>10}{'index MB':>10}{'rows':>12}{'dead (est.)':>12}")
    for when in ("empty", "enqueued", "drained"):
        for table, z in s["sizes"][when].items():
            print(
                f"    {table + ' ' + when:<22}{z['total_bytes'] / 2**20:>10.1f}{z['heap_bytes'] / 2**20:>10.1f}"
                f"{z['index_bytes'] / 2**20:>10.1f}{z['rows']:>12,}{z['dead_rows']:>12,}"
            )


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
        default=list(WORKLOADS + ONCE),
        help=f"comma-separated subset of {','.join(WORKLOADS + ONCE + OPTIONAL)}",
    )
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--peers", help="comma-separated subset of the peers (default: every one set up)")
    api = ap.add_argument_group("API workloads (http, sse)")
    api.add_argument("--http-seconds", type=float, default=10.0, help="measured seconds of load per run")
    api.add_argument("--http-warmup", type=float, default=2.0, help="seconds of load before measuring")
    api.add_argument("--http-connections", type=int, default=64)
    api.add_argument("--http-client", choices=("auto", "wrk", "asyncio"), default="auto", help="auto: wrk if installed")
    api.add_argument("--sse-subscribers", type=int, default=1000)
    api.add_argument("--sse-jobs", type=int, default=50, help="echo jobs enqueued --sse-gap apart")
    api.add_argument("--sse-gap", type=float, default=0.1, help="seconds between the echo jobs' enqueues")
    api.add_argument(
        "--sse-api-processes", type=int, default=1, help="API processes sharing the subscribers (as pods would)"
    )
    long = ap.add_argument_group("soak (not run unless asked)")
    long.add_argument("--soak", action="store_true", help="also run the soak (1,000,000 jobs unless --soak-jobs)")
    long.add_argument("--soak-jobs", type=int, help="jobs in the soak (implies --soak)")
    long.add_argument("--soak-processes", type=int, default=1, choices=(1, 2), help="worker processes draining")
    web = ap.add_argument_group("the Jobs panel (not run unless asked)")
    web.add_argument(
        "--panel", action="store_true", help="also run the panel workload (5,000,000 jobs unless --panel-jobs)"
    )
    web.add_argument("--panel-jobs", type=int, help="jobs in the table behind the panel (implies --panel)")
    web.add_argument("--panel-seconds", type=float, default=10.0, help="measured seconds per page")
    web.add_argument("--panel-clients", type=int, default=4, help="concurrent signed-in clients")
    kept = ap.add_argument_group("kept history (not run unless asked)")
    kept.add_argument(
        "--history", action="store_true", help="also run the kept-history workload (10,000,000 finished jobs)"
    )
    kept.add_argument("--history-jobs", type=int, help="finished jobs kept (implies --history)")
    kept.add_argument(
        "--history-rounds", type=int, default=3, help="interleaved drains into each database (the gaps fill up)"
    )
    args = ap.parse_args(argv)
    unknown = set(args.only) - set(WORKLOADS + ONCE + OPTIONAL)
    if unknown:
        ap.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    if args.soak or args.soak_jobs:
        args.only = [*args.only, "soak"]
    args.soak_jobs = args.soak_jobs or 1_000_000
    if args.panel or args.panel_jobs:
        args.only = [*args.only, "panel"]
    args.panel_jobs = args.panel_jobs or 5_000_000
    if args.history or args.history_jobs:
        args.only = [*args.only, "history"]
    args.history_jobs = args.history_jobs or 10_000_000
    started = time.time()
    result: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "jobs": args.jobs,
        "repeat": args.repeat,
        "settings": {
            k: v for k, v in vars(args).items() if k.startswith(("http_", "sse_", "soak_", "panel_", "history_"))
        },
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
