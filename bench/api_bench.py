"""The API's workloads: HTTP enqueue (`POST /api/jobs` under 64 connections) and SSE fan-out
(1,000 subscribers on one channel stream while jobs change state).

Each run uses a fresh database (bench.pgcue_bench.scratch_database) and one `pgcue serve`
process on a free loopback port, with a key for a paid user who owns the channel used.
The load generator shares the machine (and its two cores) with the server and PostgreSQL;
each result says how much CPU the server and the client took, so a reader can tell which
one was the limit.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import IO, Any

import httpx
import msgspec

from bench.pgcue_bench import ROOT, Workers, _pct, scratch_database
from pgcue.core import db
from pgcue.core.config import Settings
from pgcue.core.models import NewJob
from pgcue.core.queue import Queue

HERE = Path(__file__).resolve().parent
USER = "bench-user"
CHANNEL = "bench-channel"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def wrk_path() -> str | None:
    """The `wrk` binary if installed (Debian: apt-get install wrk), else None."""
    return shutil.which("wrk")


def raise_fd_limit(want: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE toward `want` (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _own_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class ApiServer:
    """One `pgcue serve` subprocess on a free loopback port, known to answer before use."""

    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.env = env or {}
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] = tempfile.TemporaryFile()

    async def start(self, timeout: float = 30) -> None:
        env = dict(
            os.environ,
            PGCUE_DATABASE_URL=self.settings.database_url,
            PGCUE_LOG_FORMAT="json",
            PGCUE_LOG_LEVEL="warning",
            **self.env,
        )
        argv = [sys.executable, "-m", "pgcue.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"pgcue serve exited ({self.proc.returncode}): {self.tail()}")
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"pgcue serve did not answer within {timeout}s: {self.tail()}")
                await asyncio.sleep(0.1)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return _cpu_seconds(self.proc.pid)

    def memory_mb(self) -> dict[str, float]:
        """Resident set now and its peak (VmRSS, VmHWM from /proc), in MB."""
        assert self.proc is not None
        got = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                got[key] = int(value.split()[0]) / 1024
        return {"rss_mb": got["VmRSS"], "peak_rss_mb": got["VmHWM"]}

    def tail(self, lines: int = 5) -> str:
        self.log.seek(0)
        return " | ".join(self.log.read().decode(errors="replace").strip().splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


async def _key(settings: Settings) -> str:
    """A key for a paid user who owns CHANNEL."""
    pool = await db.create_pool(settings, min_size=1, max_size=1)
    try:
        return await Queue(pool, settings.schema).keys.create(USER, plan="paid", channels=[CHANNEL], label="bench")
    finally:
        await pool.close()


# --- HTTP enqueue -------------------------------------------------------------------------


def _run_wrk(url: str, token: str, seconds: float, connections: int, threads: int, job_type: str) -> dict[str, Any]:
    wrk = wrk_path()
    assert wrk is not None
    env = dict(os.environ, PGCUE_BENCH_TOKEN=token, PGCUE_BENCH_CHANNEL=CHANNEL, PGCUE_BENCH_TYPE=job_type)
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "wrk_post.lua"),
        f"{url}/api/jobs",
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("PGCUE_WRK "):
            out: dict[str, Any] = json.loads(line.removeprefix("PGCUE_WRK "))
            return out
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}): {done.stderr.strip()[-500:]}")


async def _run_async_client(
    url: str, token: str, warmup: float, seconds: float, connections: int, job_type: str
) -> dict[str, Any]:
    """The fallback load generator: `connections` keep-alive HTTP/1.1 connections on raw
    asyncio streams, each sending the next request as soon as the last one is answered."""
    host, port = url.removeprefix("http://").split(":")
    body = msgspec.json.encode({"type": job_type, "channelId": CHANNEL, "payload": {"n": 1}})
    request = (
        f"POST /api/jobs HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    t0 = time.perf_counter()
    measure_from, measure_to = t0 + warmup, t0 + warmup + seconds
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    errors = Counter[str]()
    last_done = measure_from

    async def connection() -> None:
        nonlocal last_done
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while (started := time.perf_counter()) < measure_to:
                writer.write(request)
                status = (await reader.readline()).split(b" ", 2)[1].decode()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                finished = time.perf_counter()
                if started >= measure_from:
                    latencies.append(finished - started)
                    statuses[status] += 1
                    last_done = max(last_done, finished)
        except (OSError, asyncio.IncompleteReadError, IndexError) as exc:
            errors[type(exc).__name__] += 1
        finally:
            writer.close()

    await asyncio.wait_for(asyncio.gather(*(connection() for _ in range(connections))), warmup + seconds + 60)
    latencies.sort()
    us = [x * 1e6 for x in latencies]
    return {
        "requests": len(latencies),
        "duration_us": int((last_done - measure_from) * 1e6),
        "p50_us": _pct(us, 50),
        "p90_us": _pct(us, 90),
        "p99_us": _pct(us, 99),
        "max_us": us[-1] if us else float("nan"),
        "statuses": dict(statuses),
        "errors": dict(errors),
    }


async def http_enqueue(
    base_dsn: str,
    seconds: float = 10.0,
    warmup: float = 2.0,
    connections: int = 64,
    threads: int = 2,
    job_type: str = "echo",
    client: str = "auto",
) -> dict[str, Any]:
    """POST /api/jobs from `connections` loopback connections for `seconds` after `warmup`."""
    use_wrk = client == "wrk" or (client == "auto" and wrk_path() is not None)
    if use_wrk and wrk_path() is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    raise_fd_limit(connections * 4 + 256)
    async with scratch_database(base_dsn) as settings:
        token = await _key(settings)
        server = ApiServer(settings)
        try:
            await server.start()
            if use_wrk:
                warm = await asyncio.to_thread(_run_wrk, server.url, token, warmup, connections, threads, job_type)
                cpu0, own0 = server.cpu_seconds(), _own_cpu_seconds()
                res = await asyncio.to_thread(_run_wrk, server.url, token, seconds, connections, threads, job_type)
                cpu1, own1 = server.cpu_seconds(), _own_cpu_seconds()
                warm_201 = int(warm["statuses"].get("201", 0))
            else:
                cpu0, own0 = server.cpu_seconds(), _own_cpu_seconds()
                res = await _run_async_client(server.url, token, warmup, seconds, connections, job_type)
                cpu1, own1 = server.cpu_seconds(), _own_cpu_seconds()
                warm_201 = None  # the async client's warm-up is not counted per status
            conn = await db.connect(settings)
            try:
                stored = await conn.fetchval("SELECT count(*) FROM pgcue.jobs")
            finally:
                await conn.close()
        finally:
            server.stop()
    wall = res["duration_us"] / 1e6
    created = int(res["statuses"].get("201", 0))
    other = {k: v for k, v in res["statuses"].items() if k != "201"}
    out: dict[str, Any] = {
        "client": "wrk" if use_wrk else "asyncio",
        "connections": connections,
        "seconds": round(wall, 2),
        "requests": res["requests"],
        "created_201": created,
        "other_statuses": other,
        "socket_errors": {k: v for k, v in res["errors"].items() if v and k != "status"},
        "requests_per_s": created / wall if wall else 0.0,
        "p50_ms": res["p50_us"] / 1000,
        "p90_ms": res["p90_us"] / 1000,
        "p99_ms": res["p99_us"] / 1000,
        "max_ms": res["max_us"] / 1000,
        "server_cpu_pct": 100 * (cpu1 - cpu0) / wall if wall else 0.0,
        "jobs_stored": stored,
    }
    if use_wrk:
        # Every 201 is a stored job; requests in flight when wrk stops (at most one per
        # connection per wrk run) may be stored without being counted.
        extra = stored - created - (warm_201 or 0)
        out["stored_matches_201s"] = 0 <= extra <= 2 * connections
    else:
        out["client_cpu_pct"] = 100 * (own1 - own0) / wall if wall else 0.0
    out["all_201"] = not other and not out["socket_errors"] and created == res["requests"]
    return out


# --- SSE fan-out --------------------------------------------------------------------------


class _Subscriber(asyncio.Protocol):
    """One SSE connection. It only timestamps what arrives; parsing waits until the run is over,
    so the client spends as little CPU as possible while the server is measured."""

    def __init__(self, request: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.records: list[tuple[float, bytes]] = []
        self.frames = 0
        self.first: asyncio.Future[None] = loop.create_future()
        self.watch: bytes | None = None
        self.watched = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.records.append((time.time(), data))
        self.frames += data.count(b"\nevent: ")
        if not self.first.done():
            self.first.set_result(None)
        if self.watch is not None and self.watch in data:
            self.watched.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.first.done():
            self.first.set_exception(ConnectionError(f"closed before any data: {exc}"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def parse(self) -> tuple[int, dict[int, float], int]:
        """(HTTP status, {eventId: time the frame's last byte arrived}, 'too slow' cut-offs)."""
        raw = b"".join(d for _, d in self.records)
        ends = list(itertools.accumulate(len(d) for _, d in self.records))
        times = [t for t, _ in self.records]
        head = raw.find(b"\r\n\r\n")
        if head < 0:
            return 0, {}, 0
        status = int(raw[9:12])
        chunked = b"transfer-encoding: chunked" in raw[:head].lower()
        received: dict[int, float] = {}
        cutoffs = 0
        buf = b""
        pos = head + 4
        while pos < len(raw):
            if chunked:
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(raw[pos:eol].split(b";")[0], 16)
                start, stop = eol + 2, eol + 2 + size
                if size == 0 or stop > len(raw):
                    break
                pos = stop + 2
            else:
                start, stop = pos, len(raw)
                pos = stop
            at = times[bisect.bisect_left(ends, stop)]  # the read that brought the chunk's last byte
            buf += raw[start:stop]
            while (i := buf.find(b"\n\n")) >= 0:
                frame, buf = buf[:i], buf[i + 2 :]
                if frame.startswith(b": too slow"):
                    cutoffs += 1
                for line in frame.split(b"\n"):
                    if line.startswith(b"data: "):
                        received[int(msgspec.json.decode(line[6:])["eventId"])] = at
        return status, received, cutoffs


async def _lag_probe(stop: asyncio.Event, lags: list[float], period: float = 0.005) -> None:
    """How late this event loop wakes up: if it is late, the client (not the server) is busy."""
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(period)
        lags.append((time.perf_counter() - t - period) * 1000)


async def _completed(conn: Any, ids: list[uuid.UUID], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done = await conn.fetchval(
            "SELECT count(*) FROM pgcue.jobs WHERE id = ANY($1::uuid[]) AND state = 'completed'", ids
        )
        if done >= len(ids):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done} of {len(ids)} jobs completed within {timeout}s")
        await asyncio.sleep(0.05)


async def _bounded(what: str, aw: Any, timeout: float) -> Any:
    try:
        return await asyncio.wait_for(aw, timeout)
    except TimeoutError:
        raise TimeoutError(f"{what} took over {timeout}s") from None


async def sse_fanout(
    base_dsn: str,
    subscribers: int = 1000,
    jobs: int = 50,
    gap: float = 0.1,
    connect_parallel: int = 50,
    processes: int = 1,
) -> dict[str, Any]:
    """`subscribers` streams on one channel; `jobs` echo jobs enqueued `gap` apart and run by
    one worker process; for every job:status event (queued, running, completed), the time
    from its transaction (job_events.created_at) to each subscriber's receipt. With
    `processes` > 1, that many API processes (as that many pods would be) share the
    subscribers, each with its own hub and LISTEN connection; CPU is their sum, RSS the
    largest."""
    raise_fd_limit(subscribers * 2 + 512)
    loop = asyncio.get_running_loop()
    async with scratch_database(base_dsn) as settings:
        token = await _key(settings)
        # One key for every subscriber, so its stream limit (PGCUE_SSE_STREAMS_PER_KEY, 20
        # by default) is raised to the subscriber count: the fan-out is measured, not the bound.
        servers = [ApiServer(settings, {"PGCUE_SSE_STREAMS_PER_KEY": str(subscribers)}) for _ in range(processes)]
        workers = Workers(settings, "echo", 1)
        subs: list[_Subscriber] = []
        conn = None
        try:
            for server in servers:
                await server.start()
            await asyncio.to_thread(workers.wait_started)
            requests = [
                (
                    f"GET /api/events?channelId={CHANNEL} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                    f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
                ).encode()
                for server in servers
            ]
            gate = asyncio.Semaphore(connect_parallel)

            async def subscribe(i: int) -> None:
                async with gate:
                    sub = _Subscriber(requests[i % processes], loop)
                    subs.append(sub)
                    await loop.create_connection(lambda: sub, "127.0.0.1", servers[i % processes].port)
                    await _bounded("a subscriber's first bytes", sub.first, 30)

            t_connect = time.perf_counter()
            await _bounded(
                "connecting the subscribers", asyncio.gather(*(subscribe(i) for i in range(subscribers))), 120
            )
            connect_s = time.perf_counter() - t_connect
            memory_connected = max(server.memory_mb()["rss_mb"] for server in servers)
            conn = await db.connect(settings)
            queue = Queue(conn)

            # Warm-up: every subscriber must see a job's events before the clock starts (the
            # first bytes come before the server has subscribed the stream to the hub).
            await asyncio.sleep(0.5)
            for attempt in range(3):
                (warm,) = await queue.enqueue_many([NewJob(type="echo", channel_id=CHANNEL, owner_id=USER)])
                for sub in subs:
                    sub.watched.clear()
                    sub.watch = str(warm).encode()
                try:
                    await _bounded("warm-up", asyncio.gather(*(s.watched.wait() for s in subs)), 10)
                    break
                except TimeoutError:
                    if attempt == 2:
                        raise
            for sub in subs:
                sub.watch = None
            await _completed(conn, [warm], 30)
            await asyncio.sleep(0.5)

            before = [s.frames for s in subs]
            lags: list[float] = []
            stop = asyncio.Event()
            probe = asyncio.create_task(_lag_probe(stop, lags))
            cpu0, own0, t0 = sum(x.cpu_seconds() for x in servers), _own_cpu_seconds(), time.perf_counter()
            ids: list[uuid.UUID] = []
            for i in range(jobs):
                (job_id,) = await queue.enqueue_many(
                    [NewJob(type="echo", channel_id=CHANNEL, owner_id=USER, payload={"i": i})]
                )
                ids.append(job_id)
                await asyncio.sleep(gap)
            await _completed(conn, ids, 60)
            expected = await conn.fetchval("SELECT count(*) FROM pgcue.job_events WHERE job_id = ANY($1::uuid[])", ids)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if all(s.frames - b >= expected for s, b in zip(subs, before, strict=True)):
                    break
                await asyncio.sleep(0.05)
            wall = time.perf_counter() - t0
            cpu1, own1 = sum(x.cpu_seconds() for x in servers), _own_cpu_seconds()
            peak_rss = max(server.memory_mb()["peak_rss_mb"] for server in servers)
            stop.set()
            await _bounded("the lag probe", probe, 5)
            rows = await conn.fetch(
                "SELECT id, created_at, data->>'state' AS state FROM pgcue.job_events "
                "WHERE job_id = ANY($1::uuid[]) AND kind = 'job:status' ORDER BY id",
                ids,
            )
        finally:
            for sub in subs:
                sub.close()
            if conn is not None:
                await conn.close()
            workers.stop()
            for server in servers:
                server.stop()

    t_parse = time.perf_counter()
    parsed = [s.parse() for s in subs]
    parse_s = time.perf_counter() - t_parse
    per_event_all: list[float] = []
    per_delivery: list[float] = []
    by_state: dict[str, list[float]] = {}
    missing = 0
    for row in rows:
        made = row["created_at"].timestamp()
        worst = 0.0
        for _, received, _ in parsed:
            at = received.get(row["id"])
            if at is None:
                missing += 1
                continue
            ms = (at - made) * 1000
            per_delivery.append(ms)
            worst = max(worst, ms)
        per_event_all.append(worst)
        by_state.setdefault(row["state"], []).append(worst)
    per_event_all.sort()
    per_delivery.sort()
    lags.sort()
    return {
        "subscribers": subscribers,
        "api_processes": processes,
        "jobs": jobs,
        "gap_s": gap,
        "status_events": len(rows),
        "deliveries": len(per_delivery),
        "missing_deliveries": missing,
        "bad_http_status": sum(1 for status, _, _ in parsed if status != 200),
        "cut_off_too_slow": sum(c for _, _, c in parsed),
        "connect_s": round(connect_s, 2),
        "all_p50_ms": _pct(per_event_all, 50),
        "all_p99_ms": _pct(per_event_all, 99),
        "all_max_ms": per_event_all[-1] if per_event_all else float("nan"),
        # The same p99 for each kind of state change: whether the tail is made of one kind
        # (a change that waits for a fan-out of its own) or of all alike.
        **{f"all_p99_{state}_ms": _pct(sorted(v), 99) for state, v in sorted(by_state.items())},
        "delivery_p50_ms": _pct(per_delivery, 50),
        "delivery_p99_ms": _pct(per_delivery, 99),
        "server_cpu_pct": 100 * (cpu1 - cpu0) / wall,
        # The API process's memory with every subscriber connected, and its peak by the end.
        "server_rss_connected_mb": memory_connected,
        "server_peak_rss_mb": peak_rss,
        "client_cpu_pct": 100 * (own1 - own0) / wall,
        "client_loop_lag_p99_ms": _pct(lags, 99),
        "client_loop_lag_max_ms": lags[-1] if lags else float("nan"),
        "client_parse_s": round(parse_s, 2),
    }
