#!/usr/bin/env python3
"""Run the peer benchmarks (pgqueuer, procrastinate, chancy) and summarise them.

Plain python3, standard library only.  Each peer's script runs under that
peer's own virtualenv (bench/.venvs/<peer>/bin/python, made by setup.sh).

    python3 bench/peers/run_peers.py --dsn postgresql://postgres@127.0.0.1:5432/postgres \
        --repeat 3 --jobs 20000 [--out bench/results/peers.json]

Prints one JSON document on stdout: per peer and workload the median, min and
max of every figure over the repeats, the raw runs, and a "skipped" map with a
reason for each peer whose venv is missing or whose run failed (a failed run
skips that peer's remaining runs).  Progress goes to stderr.  Exit status is 0
when at least one peer produced results, 1 otherwise.

Repeats are interleaved (round r runs every peer and workload once) so slow
drift of the machine spreads over all peers instead of hitting one.  Every
subprocess is bounded by a timeout; on timeout the run gets SIGTERM (the peer
script then stops its worker and drops its database), then SIGKILL, and any
database it announced but did not drop is dropped with `<script> --drop-db`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = ("pgqueuer", "procrastinate", "chancy")
WORKLOADS = ("drain", "latency")
DRAIN_FIELDS = (
    "enqueue_per_s",
    "drain_per_s",
    "enqueue_s",
    "drain_s",
    "drain_wall_s",
    "drain_per_s_by_completed_at",
    # What the drain cost (_peercommon.Cost): PostgreSQL's CPU, the worker's, WAL.
    "pg_cpu_us_per_job",
    "worker_cpu_us_per_job",
    "wal_bytes_per_job",
)
COST_FIELDS = DRAIN_FIELDS[-3:]
LATENCY_FIELDS = ("p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms", "enqueue_call_p50_ms")
CREATED_RE = re.compile(r"created database (bench_[a-z]+_[0-9a-f]{8})")
DROPPED_RE = re.compile(r"dropped database (bench_[a-z]+_[0-9a-f]{8})")


def log(msg: str) -> None:
    sys.stderr.write(f"[run_peers {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--jobs", type=int, default=20000)
    p.add_argument("--latency-jobs", type=int, default=500)
    p.add_argument(
        "--jobs-for",
        action="append",
        default=[],
        metavar="PEER=N",
        help="per-peer drain job count override, e.g. procrastinate=5000",
    )
    p.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of " + ",".join(PEERS))
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument(
        "--venvs",
        default=os.path.join(os.path.dirname(HERE), ".venvs"),
        help="directory holding <peer>/bin/python (default bench/.venvs)",
    )
    p.add_argument("--drain-timeout", type=float, default=None, help="seconds per drain run (default: 120 + jobs/50)")
    p.add_argument("--latency-timeout", type=float, default=180.0)
    p.add_argument("--out", help="also write the JSON document to this file")
    return p.parse_args()


def venv_python(venvs: str, peer: str) -> str:
    return os.path.join(venvs, peer, "bin", "python")


def summarize(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


class RunFailed(Exception):
    pass


def _kill_group(proc: subprocess.Popen, grace_s: float) -> None:
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass


def loadavg() -> list[float] | None:
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            return [float(x) for x in fh.read().split()[:3]]
    except (OSError, ValueError):
        return None


def run_one(python: str, peer: str, workload: str, args: argparse.Namespace, jobs: int) -> dict:
    script = os.path.join(HERE, f"{peer}_bench.py")
    default_drain = 120.0 + jobs / 50.0
    timeout = (args.drain_timeout or default_drain) if workload == "drain" else args.latency_timeout
    # the script's own waits give up a little before we would kill it
    inner_timeout = max(30.0, timeout - 45.0)
    argv = [
        python,
        script,
        "--dsn",
        args.dsn,
        "--workload",
        workload,
        "--jobs",
        str(jobs),
        "--latency-jobs",
        str(args.latency_jobs),
        "--timeout",
        str(inner_timeout),
    ]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=HERE,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc, grace_s=40.0)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            out, err = "", ""
    finally:
        if proc.poll() is None:
            _kill_group(proc, grace_s=5.0)

    created = set(CREATED_RE.findall(err or ""))
    dropped = set(DROPPED_RE.findall(err or ""))
    for db in sorted(created - dropped):
        log(f"  cleaning up leftover database {db}")
        try:
            subprocess.run(
                [python, script, "--dsn", args.dsn, "--drop-db", db], cwd=HERE, timeout=150, capture_output=True
            )
        except subprocess.TimeoutExpired:
            log(f"  could not drop {db} (timeout)")

    tail = (err or "").strip()[-600:]
    if timed_out:
        raise RunFailed(
            f"{workload} run timed out after {timeout:.0f}s (stopped with "
            f"SIGTERM/SIGKILL; databases cleaned up: {sorted(created) or 'none'})"
        )
    if proc.returncode != 0:
        raise RunFailed(f"{workload} run exited with {proc.returncode}; stderr tail: {tail}")
    lines = [ln for ln in (out or "").splitlines() if ln.strip().startswith("{")]
    if not lines:
        raise RunFailed(f"{workload} run printed no JSON line; stderr tail: {tail}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise RunFailed(f"{workload} run printed bad JSON ({exc}): {lines[-1][:300]}") from exc


def main() -> int:
    args = parse_args()
    t_start = time.time()
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for p in peers:
        if p not in PEERS:
            sys.exit(f"unknown peer {p!r}")
    for w in workloads:
        if w not in WORKLOADS:
            sys.exit(f"unknown workload {w!r}")
    jobs_for = {p: args.jobs for p in peers}
    for item in args.jobs_for:
        name, _, n = item.partition("=")
        if name not in jobs_for or not n.isdigit():
            sys.exit(f"bad --jobs-for {item!r}")
        jobs_for[name] = int(n)

    skipped: dict[str, str] = {}
    runs: dict[str, dict[str, list[dict]]] = {p: {w: [] for w in workloads} for p in peers}
    pythons: dict[str, str] = {}
    for p in peers:
        py = venv_python(args.venvs, p)
        if not os.access(py, os.X_OK):
            skipped[p] = f"venv missing: {py} not found (run bench/peers/setup.sh)"
            log(f"skip {p}: {skipped[p]}")
        else:
            pythons[p] = py

    for rnd in range(1, args.repeat + 1):
        for p in peers:
            if p in skipped:
                continue
            for w in workloads:
                if p in skipped:
                    break
                t0 = time.time()
                load_before = loadavg()
                log(
                    f"round {rnd}/{args.repeat}: {p} {w}"
                    + (f" jobs={jobs_for[p]}" if w == "drain" else f" latency_jobs={args.latency_jobs}")
                )
                try:
                    res = run_one(pythons[p], p, w, args, jobs_for[p])
                except RunFailed as exc:
                    skipped[p] = f"round {rnd}: {exc}"
                    log(f"  FAILED, skipping {p} from now on: {str(exc)[:300]}")
                    break
                res["elapsed_s"] = round(time.time() - t0, 2)
                # 1-min load average around the run: other load on the 2 cores
                # skews the figures a lot, keep the evidence with them
                load_after = loadavg()
                res["loadavg_1m_before_after"] = [
                    load_before[0] if load_before else None,
                    load_after[0] if load_after else None,
                ]
                runs[p][w].append(res)
                if w == "drain":
                    log(
                        f"  enqueue {res['enqueue_per_s']:.0f}/s  drain "
                        f"{res['drain_per_s']:.0f}/s  ({res['elapsed_s']}s)"
                    )
                else:
                    log(
                        f"  p50 {res['p50_ms']:.2f} ms  p95 {res['p95_ms']:.2f} ms  "
                        f"p99 {res['p99_ms']:.2f} ms  ({res['elapsed_s']}s)"
                    )

    summary: dict[str, dict] = {}
    for p in peers:
        entry: dict = {"status": "skipped" if p in skipped else "ok"}
        for w in workloads:
            rs = runs[p][w]
            if not rs:
                continue
            entry["version"] = rs[0].get("version")
            fields = DRAIN_FIELDS if w == "drain" else LATENCY_FIELDS
            block: dict = {"runs": len(rs)}
            if w == "drain":
                block["jobs"] = rs[0]["jobs"]
                block["analyzed"] = rs[0].get("analyzed")
            else:
                block["latency_jobs"] = rs[0]["latency_jobs"]
            for f in fields:
                vals = [r[f] for r in rs if isinstance(r.get(f), (int, float))]
                if vals:
                    block[f] = summarize(vals)
            block["worker"] = rs[0].get("worker")
            entry[w] = block
        if p in skipped:
            entry["reason"] = skipped[p]
        summary[p] = entry

    headline: dict[str, dict] = {}
    for p, entry in summary.items():
        h: dict = {}
        if "drain" in entry:
            h["jobs"] = entry["drain"]["jobs"]
            h["enqueue_per_s"] = entry["drain"]["enqueue_per_s"]["median"]
            h["drain_per_s"] = entry["drain"]["drain_per_s"]["median"]
            for f in COST_FIELDS:
                if f in entry["drain"]:
                    h[f] = entry["drain"][f]["median"]
        if "latency" in entry:
            for f in ("p50_ms", "p95_ms", "p99_ms"):
                h[f] = entry["latency"][f]["median"]
        if p in skipped:
            h["skipped"] = skipped[p]
        headline[p] = h

    doc = {
        "headline_medians": headline,
        "config": {
            "dsn": args.dsn,
            "repeat": args.repeat,
            "jobs": jobs_for,
            "latency_jobs": args.latency_jobs,
            "workloads": workloads,
            "host_cpus": os.cpu_count(),
        },
        "summary": summary,
        "skipped": skipped,
        "runs": runs,
        "wall_s": round(time.time() - t_start, 1),
    }
    text = json.dumps(doc, indent=2)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    print(text)
    log(f"done in {doc['wall_s']}s")
    # 0 when at least one peer produced results (skips are reported in the JSON)
    return 0 if any(runs[p][w] for p in peers for w in workloads) else 1


if __name__ == "__main__":
    sys.exit(main())
