"""Stdlib-only helpers shared by the peer benchmark scripts.

Each ``<peer>_bench.py`` runs under that peer's own virtualenv; this module is
imported from the script's directory (which Python puts on ``sys.path``), so it
must not import anything outside the standard library.

Measurement conventions shared by all peers (keep them identical so the
numbers are comparable):

* enqueue_per_s: N / wall time of the peer's bulk-enqueue call(s), measured in
  the producer process, from just before the first call until the last one has
  returned (i.e. committed).
* drain_per_s: the worker is started as a separate OS process *after* the bulk
  enqueue.  The clock starts when the first job's handler begins (recorded by
  the handler itself into a marks file, so interpreter start-up and imports are
  excluded) and stops at the first poll of the peer's job table that shows no
  unfinished job left (polled every POLL_S seconds).  drain_per_s = N / that
  interval.  ``drain_wall_s`` (worker spawn -> all done) is reported too.
* drain runs an untimed ``ANALYZE`` between bulk enqueue and worker start
  (``--no-analyze`` skips it).  Without it a freshly created, just-filled job
  table has no planner statistics yet (autoanalyze has not run), and e.g.
  procrastinate's fetch query then sorts the whole backlog per job (15 ms at
  11k rows instead of 0.4 ms): the result would measure the cold statistics,
  not the queue.
* latency: the handler appends "<seq> <time.time()>" at its very first line to
  a marks file; the producer records time.time() right after the single-job
  enqueue call has returned (the call commits).  latency = handler start -
  enqueue return, in ms.  Warm-up jobs are sent first and excluded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

POLL_S = 0.02  # completion poll interval during drain
WARMUP_JOBS = 5  # latency warm-up jobs (excluded from percentiles)
LATENCY_GAP_S = 0.010  # producer spacing between latency jobs
WORKER_READY_TIMEOUT_S = 60.0


# --------------------------------------------------------------------------
# CLI / output
# --------------------------------------------------------------------------


def parse_args(peer: str, default_jobs: int = 20000) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=f"{peer} peer benchmark")
    p.add_argument(
        "--dsn",
        default=os.environ.get("BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="server DSN (any existing database; a fresh one is created)",
    )
    p.add_argument("--jobs", type=int, default=default_jobs)
    p.add_argument("--workload", choices=("drain", "latency"), default="drain")
    p.add_argument("--latency-jobs", type=int, default=500)
    p.add_argument("--timeout", type=float, default=300.0, help="upper bound in seconds for any single wait")
    p.add_argument("--keep-db", action="store_true", help="debug: do not drop the database at the end")
    p.add_argument(
        "--no-analyze",
        action="store_true",
        help="drain: skip the (untimed) ANALYZE between bulk enqueue and "
        "worker start, i.e. drain against cold planner statistics",
    )
    p.add_argument("--drop-db", metavar="NAME", help="only drop database NAME (cleanup after a killed run) and exit")
    return p.parse_args()


def install_sigterm_cancel() -> None:
    """Turn SIGTERM into cancellation of the current asyncio task, so `finally`
    blocks (worker stop, DROP DATABASE) still run when a runner times us out."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)


def announce_db(name: str) -> None:
    """Tell a supervising runner which database to drop if we get killed."""
    log(f"created database {name}")


ANALYZE_NOTE = "untimed ANALYZE after bulk enqueue (fresh table, no autoanalyze yet); disable with --no-analyze"


def emit(result: dict) -> None:
    """Print the single JSON result line on stdout."""
    sys.stdout.write(json.dumps(result, sort_keys=False) + "\n")
    sys.stdout.flush()


def log(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------
# DSN / database names
# --------------------------------------------------------------------------


def fresh_db_name(peer: str) -> str:
    return f"bench_{peer}_{secrets.token_hex(4)}"


def _set_pdeathsig() -> None:
    """preexec_fn: new session + SIGKILL this child if the benchmark process dies
    (Linux prctl PR_SET_PDEATHSIG), so a killed run never leaves a worker behind."""
    os.setsid()
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 == PR_SET_PDEATHSIG
    except Exception:
        pass


def _kv_to_url(dsn: str) -> str:
    """Turn a libpq key=value string into a postgresql:// URL (simple quoting only)."""
    parts: dict[str, str] = {}
    for tok in dsn.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            parts[k.strip()] = v.strip().strip("'")
    user = parts.pop("user", "")
    password = parts.pop("password", "")
    host = parts.pop("host", "127.0.0.1")
    port = parts.pop("port", "5432")
    dbname = parts.pop("dbname", "postgres")
    auth = ""
    if user:
        auth = quote(user, safe="")
        if password:
            auth += ":" + quote(password, safe="")
        auth += "@"
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in parts.items())
    return urlunsplit(("postgresql", f"{auth}{host}:{port}", "/" + dbname, query, ""))


def normalize_dsn(dsn: str) -> str:
    dsn = dsn.strip()
    if dsn.startswith(("postgres://", "postgresql://")):
        return dsn
    return _kv_to_url(dsn)


def dsn_with_db(dsn: str, dbname: str) -> str:
    u = urlsplit(normalize_dsn(dsn))
    return urlunsplit((u.scheme, u.netloc, "/" + quote(dbname, safe=""), u.query, u.fragment))


def db_of(dsn: str) -> str:
    return unquote(urlsplit(normalize_dsn(dsn)).path.lstrip("/")) or "postgres"


# --------------------------------------------------------------------------
# Marks file (handler -> benchmark process)
# --------------------------------------------------------------------------


def new_marks_file(peer: str) -> str:
    fd, path = tempfile.mkstemp(prefix=f"bench_{peer}_marks_", suffix=".txt")
    os.close(fd)
    return path


def read_marks(path: str) -> dict[str, float]:
    """Return {key: first timestamp} from a marks file ("key ts" per line)."""
    out: dict[str, float] = {}
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) != 2:
                    continue  # partially written line; next read gets it
                try:
                    ts = float(parts[1])
                except ValueError:
                    continue
                out.setdefault(parts[0], ts)
    except FileNotFoundError:
        pass
    return out


class Marker:
    """Used *inside the worker* by the job handlers.

    ``mark(key)`` appends one line with the current time.  Each line is written
    with a single os.write on an O_APPEND descriptor, so lines from concurrent
    writers never interleave.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._fd: int | None = None
        self.first_done = False

    def mark(self, key: str, ts: float | None = None) -> None:
        if ts is None:
            ts = time.time()
        if not self.path:
            return
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(self._fd, f"{key} {ts:.6f}\n".encode("ascii"))

    def mark_first(self) -> None:
        """Cheap 'first job started' marker for the drain workload."""
        if not self.first_done:
            self.first_done = True
            self.mark("first")


# --------------------------------------------------------------------------
# Worker subprocess management
# --------------------------------------------------------------------------


class WorkerProc:
    """A peer worker running as a separate process (own session/process group)."""

    def __init__(self, argv: list[str], env: dict[str, str], peer: str, cwd: str | None = None) -> None:
        self.argv = argv
        self.log_path = tempfile.mkstemp(prefix=f"bench_{peer}_worker_", suffix=".log")[1]
        self._log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env)
        self.spawned_at = time.time()
        self.proc = subprocess.Popen(
            argv,
            env=full_env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_set_pdeathsig,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"worker exited early with code {self.proc.returncode}; log tail:\n{self.tail()}")

    def tail(self, n: int = 3000) -> str:
        try:
            self._log.flush()
            with open(self.log_path, "rb") as fh:
                data = fh.read()
            return data[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM (the peers' graceful-shutdown signal), then SIGKILL the group."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        # whatever is left in the group (children, stragglers) gets SIGKILL
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()

    def cleanup(self) -> None:
        try:
            os.unlink(self.log_path)
        except OSError:
            pass


async def await_until(
    pred: Callable[[], Awaitable[bool]],
    timeout_s: float,
    what: str,
    interval_s: float = POLL_S,
    worker: WorkerProc | None = None,
) -> float:
    """Async twin of wait_until: ``pred`` is an async callable."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await pred():
            return time.time()
        if worker is not None:
            worker.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(interval_s)


async def wait_for_marks(
    path: str, keys: Iterable[str], timeout_s: float, worker: WorkerProc | None = None
) -> dict[str, float]:
    """Wait until every key has a line in the marks file; return all marks."""
    wanted = set(keys)
    marks: dict[str, float] = {}

    async def have_all() -> bool:
        nonlocal marks
        marks = read_marks(path)
        return wanted.issubset(marks)

    await await_until(have_all, timeout_s, f"{len(wanted)} handler marks", interval_s=0.05, worker=worker)
    return marks


# --------------------------------------------------------------------------
# What a drain costs: CPU of PostgreSQL and of the worker, WAL written
# --------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int | str) -> tuple[str, list[str]] | None:
    """(comm, the fields after it) of /proc/<pid>/stat, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    close = stat.rindex(")")
    return stat[stat.index("(") + 1 : close], stat[close + 2 :].split()


def _cpu_of(fields: list[str]) -> float:
    """utime + stime + cutime + cstime (fields 14-17 of stat(5)), in seconds: its own CPU
    and that of the children it has reaped."""
    return sum(int(f) for f in fields[11:15]) / _TICK


def pg_cpu_seconds() -> float:
    """CPU seconds the PostgreSQL server on this machine has used so far: every process
    named postgres (backends, WAL writer, checkpointer, autovacuum), and through the
    postmaster's reaped-children time, the backends that have exited since. A difference
    of two readings is what the server spent between them, whoever's backend it was; so
    nothing else may use this server while a drain is measured."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            got = _stat_fields(pid)
            if got is not None and got[0] == "postgres":
                total += _cpu_of(got[1])
    return total


def process_cpu_seconds(pid: int) -> float:
    got = _stat_fields(pid)
    return _cpu_of(got[1]) if got is not None else float("nan")


class Cost:
    """CPU of PostgreSQL and of one worker process, and WAL bytes, between start() and
    stop(); reported per job. `lsn` is an async callable returning pg_current_wal_lsn()
    as text (the caller's own connection). `observer_pid` is that connection's backend
    (SELECT pg_backend_pid()): its CPU, the harness polling for the end of the drain, is
    left out, so how often a harness polls does not change a system's figure."""

    def __init__(self, worker_pid: int, lsn: Callable[[], Awaitable[str]], observer_pid: int | None = None) -> None:
        self.worker_pid = worker_pid
        self.lsn = lsn
        self.observer_pid = observer_pid

    def _pg(self) -> float:
        spent = pg_cpu_seconds()
        if self.observer_pid is not None:
            spent -= process_cpu_seconds(self.observer_pid)
        return spent

    async def start(self) -> None:
        self.lsn0 = await self.lsn()
        self.pg0 = self._pg()
        self.w0 = process_cpu_seconds(self.worker_pid)

    async def stop(self, jobs: int) -> dict:
        pg = self._pg() - self.pg0
        w = process_cpu_seconds(self.worker_pid) - self.w0
        wal = lsn_bytes(await self.lsn()) - lsn_bytes(self.lsn0)
        return {
            "pg_cpu_us_per_job": round(1e6 * pg / jobs, 1),
            "worker_cpu_us_per_job": round(1e6 * w / jobs, 1),
            "wal_bytes_per_job": round(wal / jobs, 1),
        }


class PsycopgObserver:
    """One autocommit psycopg connection for a harness whose library reaches the database
    through a pool (Chancy, procrastinate): the drain's polls and WAL readings go through
    it, so its backend is the one Cost leaves out of the drain's cost."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    @classmethod
    async def connect(cls, dsn: str) -> PsycopgObserver:
        import psycopg  # in the peers' own virtualenvs, not pgqueuer's

        return cls(await psycopg.AsyncConnection.connect(dsn, autocommit=True))

    async def scalar(self, sql: str) -> Any:
        cur = await self.conn.execute(sql)
        row = await cur.fetchone()
        return row[0]

    async def pid(self) -> int:
        return int(await self.scalar("SELECT pg_backend_pid()"))

    async def lsn(self) -> str:
        return str(await self.scalar("SELECT pg_current_wal_lsn()::text"))

    async def close(self) -> None:
        await self.conn.close()


async def observed_drain(
    worker: WorkerProc, marks: str, dsn: str, unfinished_sql: str, n: int, enqueue_s: float, timeout_s: float
) -> dict:
    """timed_drain with its cost, for a harness whose library polls through a pool: the
    polls and WAL readings go through a PsycopgObserver, left out of the cost."""
    observer = await PsycopgObserver.connect(dsn)
    try:
        return await timed_drain(
            worker,
            marks,
            lambda: observer.scalar(unfinished_sql),
            n,
            enqueue_s,
            timeout_s,
            lsn=observer.lsn,
            observer_pid=await observer.pid(),
        )
    finally:
        await observer.close()


def lsn_bytes(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


async def timed_drain(
    worker: WorkerProc,
    marks: str,
    unfinished: Callable[[], Awaitable[int]],
    n: int,
    enqueue_s: float,
    timeout_s: float,
    lsn: Callable[[], Awaitable[str]] | None = None,
    observer_pid: int | None = None,
) -> dict:
    """The drain clock every peer uses: from the first handler start (its mark) to the
    first poll of `unfinished()` (an async count) that finds nothing left. With `lsn`, the
    drain's cost too (Cost), over the same interval, without the polling backend's
    (`observer_pid`)."""

    async def first_started() -> bool:
        return "first" in read_marks(marks)

    await await_until(first_started, WORKER_READY_TIMEOUT_S, "first job to start", interval_s=0.005, worker=worker)
    cost = Cost(worker.proc.pid, lsn, observer_pid) if lsn is not None else None
    if cost is not None:
        await cost.start()

    async def all_done() -> bool:
        return await unfinished() == 0

    done_ts = await await_until(all_done, timeout_s, "queue to drain", worker=worker)
    res = drain_result(n, enqueue_s, read_marks(marks)["first"], done_ts, worker.spawned_at)
    if cost is not None:
        res.update(await cost.stop(n))
    return res


def drain_result(n: int, enqueue_s: float, first_ts: float, done_ts: float, spawned_ts: float) -> dict:
    drain_s = max(done_ts - first_ts, 1e-9)
    return {
        "enqueue_per_s": round(n / max(enqueue_s, 1e-9), 1),
        "drain_per_s": round(n / drain_s, 1),
        "enqueue_s": round(enqueue_s, 4),
        "drain_s": round(drain_s, 4),
        "drain_wall_s": round(done_ts - spawned_ts, 4),
    }


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------


def percentile(sorted_vals: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of an ascending list."""
    if not sorted_vals:
        raise ValueError("no samples")
    if len(sorted_vals) == 1:
        return sorted_vals[0]
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    frac = pos - lo
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * frac


def latency_summary(commit_ts: dict[str, float], marks: dict[str, float], call_s: list[float] | None = None) -> dict:
    """Percentiles of (handler start - enqueue commit) in ms.

    ``call_s``: durations of the producer's enqueue calls, reported separately
    (p50) so figures measured from *before* the call can be reconciled.
    """
    lat_ms = sorted((marks[k] - commit_ts[k]) * 1000.0 for k in commit_ts if k in marks)
    if not lat_ms:
        raise RuntimeError("no latency samples collected")
    out = {
        "p50_ms": round(percentile(lat_ms, 50), 3),
        "p95_ms": round(percentile(lat_ms, 95), 3),
        "p99_ms": round(percentile(lat_ms, 99), 3),
        "max_ms": round(lat_ms[-1], 3),
        "mean_ms": round(sum(lat_ms) / len(lat_ms), 3),
        "samples": len(lat_ms),
    }
    if call_s:
        out["enqueue_call_p50_ms"] = round(percentile(sorted(call_s), 50) * 1000.0, 3)
    return out


# --------------------------------------------------------------------------
# Main driver shared by the peer scripts
# --------------------------------------------------------------------------

_DB_NAME_RE = re.compile(r"^bench_[a-z]+_[0-9a-f]{8}$")


def drop_sql(name: str) -> str:
    if not _DB_NAME_RE.match(name):
        raise ValueError(f"refusing to drop {name!r}: not a benchmark database name")
    return f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'


async def bench_main(
    peer: str,
    version: str,
    admin_exec: Callable[[str, str], Awaitable[None]],
    run_drain: Callable[[argparse.Namespace, str, str], Awaitable[dict]],
    run_latency: Callable[[argparse.Namespace, str, str], Awaitable[dict]],
) -> int:
    """Create the fresh database, run one workload, always drop the database.

    ``admin_exec(server_dsn, sql)`` runs one autocommitted statement with the
    peer's own driver; ``run_*`` get (args, dsn of the fresh database, path of
    the marks file the worker's handlers write to).
    """
    args = parse_args(peer)
    install_sigterm_cancel()
    server_dsn = normalize_dsn(args.dsn)
    if args.drop_db:
        await asyncio.wait_for(admin_exec(server_dsn, drop_sql(args.drop_db)), 120)
        return 0
    dbname = fresh_db_name(peer)
    db_dsn = dsn_with_db(server_dsn, dbname)
    result: dict = {"peer": peer, "version": version, "workload": args.workload}
    await asyncio.wait_for(admin_exec(server_dsn, f'CREATE DATABASE "{dbname}"'), 120)
    announce_db(dbname)
    # Watchdog over the whole workload (schema install, enqueue, waits): each
    # individual wait has its own timeout, this also bounds the plain queries.
    overall_s = args.timeout + WORKER_READY_TIMEOUT_S + 120.0
    marks = ""
    try:
        marks = new_marks_file(peer)
        if args.workload == "drain":
            result["jobs"] = args.jobs
            result.update(await asyncio.wait_for(run_drain(args, db_dsn, marks), overall_s))
        else:
            result["latency_jobs"] = args.latency_jobs
            result.update(await asyncio.wait_for(run_latency(args, db_dsn, marks), overall_s))
    finally:
        if marks:
            try:
                os.unlink(marks)
            except OSError:
                pass
        if args.keep_db:
            log(f"keeping database {dbname}")
        else:
            await asyncio.wait_for(admin_exec(server_dsn, drop_sql(dbname)), 120)
            log(f"dropped database {dbname}")
    result["database"] = dbname
    emit(result)
    return 0
