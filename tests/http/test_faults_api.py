"""Faults seen from the API and its live events: workers killed again and again,
every pgcue connection terminated, PostgreSQL restarted under the API, a long transaction
holding vacuum back, cancels through HTTP, SIGTERM to the API with streams open, and 500
slow or vanished SSE clients. Real processes, real PostgreSQL, real HTTP and SSE."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from pgcue.core import db
from pgcue.core.config import Settings
from pgcue.core.models import NewJob
from pgcue.core.queue import Queue
from tests.conftest import ROOT, Watcher, read_trace
from tests.helpers.apiserver import Api, Sse, SseReader, serve, status_is
from tests.processes.test_faults import PrivateCluster, private_cluster, restartable  # noqa: F401  (fixtures reused)

PROBLEM = "application/problem+json"
PGCUE_SERVER_APPS = ("pgcue-api", "pgcue-api-listen", "pgcue-worker", "pgcue-worker-listen", "pgcue-maintenance")


# --- helpers ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def post_job(c: httpx.AsyncClient, body: dict[str, Any], key: str | None = None, tries: int = 40) -> Any:
    """POST /api/jobs, retrying a 503 or a dropped connection with the same Idempotency-Key
    (so a retry never makes a second job); returns (job, how many 503s it met)."""
    key = key or uuid.uuid4().hex
    unavailable = 0
    for _ in range(tries):
        try:
            r = await c.post("/api/jobs", json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError:
            unavailable += 1
            await asyncio.sleep(0.1)
            continue
        if r.status_code == 503:
            assert r.headers["content-type"] == PROBLEM, r.text
            unavailable += 1
            await asyncio.sleep(0.1)  # Retry-After: the API says "shortly"
            continue
        assert r.status_code == 201, r.text
        return r.json()["job"], unavailable
    raise AssertionError(f"POST /api/jobs kept failing ({unavailable} unavailable answers)")


async def table_events(conn: Any, channel_id: str) -> list[int]:
    rows = await conn.fetch("SELECT id FROM pgcue.job_events WHERE channel_id = $1 ORDER BY id", channel_id)
    return [r["id"] for r in rows]


def event_ids(events: list[Sse]) -> list[int]:
    return [e.data["eventId"] for e in events if e.data and "eventId" in e.data]


def parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


class ApiProcess:
    """The API in its own process (`pgcue serve`, with settings from PGCUE_* `options`), so
    it can be signalled and its memory measured."""

    def __init__(self, settings: Settings, options: dict[str, Any] | None = None, grace: float = 3.0) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(
            os.environ,
            PGCUE_DATABASE_URL=settings.database_url,
            PGCUE_SCHEMA=settings.schema,
            PGCUE_POLL_INTERVAL=str(settings.poll_interval),
            PGCUE_SHUTDOWN_GRACE=str(grace),
            PGCUE_LOG_FORMAT="json",
            **{f"PGCUE_{name.upper()}": str(value) for name, value in (options or {}).items()},
        )
        argv = [sys.executable, "-m", "pgcue.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    async def ready(self, timeout: float = 30.0) -> ApiProcess:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as c:
            while True:  # a process offers no readiness event; poll /healthz, bounded
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise AssertionError(f"API process exited with {self.proc.returncode}: {err[-2000:]}")
                try:
                    if (await c.get("/healthz")).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError("API process did not start")
                await asyncio.sleep(0.05)

    def client(self, key: str | None = None, timeout: float = 20.0) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)

    def rss_kib(self) -> int:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
        assert match
        return int(match.group(1))

    async def metrics(self) -> dict[str, float]:
        async with self.client() as c:
            r = await c.get("/metrics")
        assert r.status_code == 200
        return parse_metrics(r.text)

    async def until_metric(self, name: str, pred: Any, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while True:
            value = (await self.metrics()).get(name, 0.0)
            if pred(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} stayed at {value} for {timeout}s")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def api_process(settings: Settings) -> Iterator[Any]:
    procs: list[ApiProcess] = []

    def start(**kw: Any) -> ApiProcess:
        proc = ApiProcess(settings, **kw)
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        p.stop()


async def alice_key(pool: asyncpg.Pool, settings: Settings) -> str:
    return await Queue(pool, settings.schema).keys.create("alice", plan="free", channels=["a1", "a2"])


# --- 1. SIGKILL workers mid-job, repeatedly --------------------------------------------------


# Above the sum of the waits inside (4 x (40 + 30 + 0.7) + 90 s), so on a loaded machine
# the wait that runs out says which step it was, instead of the whole test timing out.
@pytest.mark.timeout(400)
async def test_workers_sigkilled_repeatedly_still_complete_every_job_once(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher, settings: Settings, trace_dir: Path
) -> None:
    workers = [spawn_worker("t-quick") for _ in range(3)]
    await asyncio.gather(*(w.started() for w in workers))
    ids: list[Any] = []

    async def more(n: int) -> None:
        start = len(ids)
        ids.extend(
            await queue.enqueue_many(
                [NewJob(type="t-quick", channel_id="k", payload={"n": start + i, "sleep": 0.02}) for i in range(n)]
            )
        )

    await more(5000)
    overdue_max = 0.0
    sampling = True

    async def sample() -> None:  # how far past its lease any running job got, all run long
        nonlocal overdue_max
        async with pool.acquire() as conn:
            while sampling:
                late = await conn.fetchval(
                    "SELECT coalesce(max(extract(epoch FROM now() - lease_expires_at)), 0)::float8 "
                    "FROM pgcue.jobs WHERE state = 'running'"
                )
                overdue_max = max(overdue_max, late)
                await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    began = time.monotonic()
    killed: list[tuple[int, int]] = []  # (pid, jobs it held)
    try:
        for _ in range(4):
            # Work left for the kill to land on: on a fast machine 5,000 jobs may drain
            # before four kills (each waits for its replacement to start), so top it up.
            unfinished = await pool.fetchval("SELECT count(*) FROM pgcue.jobs WHERE state <> 'completed'")
            if unfinished < 1000:
                await more(1000)
            # a victim holding jobs right now, so the kill lands mid-job
            row = await watcher.until(
                "SELECT split_part(locked_by, ':', 2) || ':' || count(*) FROM pgcue.jobs "
                "WHERE state = 'running' AND split_part(locked_by, ':', 2)::int <> ALL($1::int[]) "
                "GROUP BY locked_by ORDER BY count(*) DESC LIMIT 1",
                [pid for pid, _ in killed],
                timeout=40,
            )
            pid, held = (int(x) for x in row.split(":"))
            victim = next(w for w in workers if w.proc.pid == pid)
            victim.kill()
            killed.append((pid, held))
            workers.remove(victim)
            workers.append(spawn_worker("t-quick"))
            await workers[-1].started(timeout=30)
            await asyncio.sleep(random.uniform(0.3, 0.7))  # the fault's rhythm: kill every ~0.5-1 s
        await watcher.states(ids, {"completed"}, timeout=90)
    finally:
        sampling = False
        await sampler
    took = time.monotonic() - began
    per_job = await pool.fetch(
        "SELECT job_id, count(*) AS n FROM pgcue.job_events "
        "WHERE kind = 'job:status' AND data->>'state' = 'completed' GROUP BY job_id"
    )
    total = len(ids)
    assert len(per_job) == total and {r["n"] for r in per_job} == {1}
    assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs WHERE state = 'completed'") == total
    rescued = await pool.fetchval('SELECT count(*) FROM pgcue.jobs WHERE errors @> \'[{"kind": "rescued"}]\'')
    assert rescued >= len(killed), (rescued, killed)  # the kills really caught jobs running
    starts = {t[2] for t in read_trace(trace_dir) if t[1] == "start"}
    assert len(starts) == total
    # The rescuer ran every rescue interval, even while its leader was being killed: no job
    # stayed `running` longer than lease + rescue interval (plus scheduling slack on a busy box).
    assert overdue_max < settings.rescue_interval + 2.0, overdue_max
    print(f"kills={killed} rescued={rescued} overdue_max={overdue_max:.2f}s took={took:.1f}s")


# --- 2. every pgcue connection terminated mid-run ---------------------------------------------


async def _read_channel(c: httpx.AsyncClient, got: list[Sse], want: set[int], done: asyncio.Event) -> int:
    """Follow /api/events?channelId=a1, dropping the connection every few events and
    resuming with Last-Event-ID, until every id in `want` (filled in later) was seen."""
    reconnects = 0
    last: str | None = None

    def finished() -> bool:
        return done.is_set() and want <= set(event_ids(got))

    while not finished():
        headers = {"Last-Event-ID": last} if last else {}
        try:
            async with c.stream("GET", "/api/events", params={"channelId": "a1"}, headers=headers) as r:
                if r.status_code == 503:
                    await asyncio.sleep(0.1)
                    continue
                assert r.status_code == 200, r.status_code
                reader = SseReader(r)
                for _ in range(random.randint(15, 60)):
                    try:
                        ev = await reader.next(timeout=1.0)
                    except TimeoutError:
                        if finished():
                            return reconnects
                        continue  # quiet for now; the caller bounds the whole wait
                    if ev is None:
                        break
                    got.append(ev)
                    last = ev.id
        except httpx.TransportError:
            pass
        reconnects += 1
    return reconnects


@pytest.mark.timeout(120)
async def test_every_pgcue_connection_terminated_mid_run(
    api: Api, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher, settings: Settings
) -> None:
    workers = [spawn_worker("t-quick") for _ in range(2)]
    await asyncio.gather(*(w.started() for w in workers))
    dbname = settings.database_url.rsplit("/", 1)[1]
    want: set[int] = set()
    done = asyncio.Event()
    async with api.client("alice") as c, api.client("alice") as c2, contextlib.AsyncExitStack() as stack:
        # a stream that stays open across the faults, and one that keeps dropping and resuming
        async with c.stream("GET", "/api/events", params={"channelId": "a1"}) as r:
            steady = SseReader(r)
            resumed: list[Sse] = []
            resumer = asyncio.create_task(_read_channel(c2, resumed, want, done))
            stack.callback(resumer.cancel)
            made: list[str] = []
            unavailable = 0
            terminated = []

            async def produce(n: int) -> None:
                nonlocal unavailable
                for i in range(n):
                    job, bad = await post_job(c, {"type": "t-quick", "channelId": "a1", "payload": {"n": i}})
                    made.append(job["id"])
                    unavailable += bad

            for _round in range(2):
                producers = [asyncio.create_task(produce(40)) for _ in range(4)]
                await watcher.until("SELECT count(*) >= 20 FROM pgcue.jobs WHERE state = 'completed'")
                terminated.append(
                    await pool.fetchval(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = $1 AND application_name = ANY($2::text[])",
                        dbname,
                        list(PGCUE_SERVER_APPS),
                    )
                )
                await asyncio.gather(*producers)
            ids = [uuid.UUID(i) for i in made]
            assert len(set(ids)) == 320
            await watcher.states(ids, {"completed"}, timeout=60)
            want.update(await table_events(pool, "a1"))
            done.set()
            out: list[Sse] = []
            async with asyncio.timeout(30):
                while not want <= set(event_ids(out)):
                    ev = await steady.next(timeout=30)
                    assert ev is not None
                    out.append(ev)
            steady_got = out
        reconnects = await asyncio.wait_for(resumer, 30)
        # the pool and the listener came back: new work goes through and is streamed
        async with api.client("alice") as c3:
            r3 = await c3.get("/api/jobs", params={"channelId": "a1", "limit": 1})
            assert r3.status_code == 200
    total = len(await table_events(pool, "a1"))
    assert sorted(event_ids(steady_got)) == sorted(want) and len(want) == total, "steady stream: gap or duplicate"
    got = event_ids(resumed)
    assert len(got) == len(set(got)), "duplicate after a Last-Event-ID resume"
    assert set(got) == want, "gap after a Last-Event-ID resume"
    per_job = await pool.fetch(
        "SELECT count(*) AS n FROM pgcue.job_events WHERE kind = 'job:status' AND data->>'state' = 'completed' "
        "GROUP BY job_id"
    )
    assert len(per_job) == 320 and {r["n"] for r in per_job} == {1}
    assert all(n >= 5 for n in terminated), terminated  # API pool + listener, 2 × (pool, listener, maintenance)
    listeners = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgcue-api-listen'", dbname
    )
    assert listeners == 1
    print(f"terminated={terminated} 503s={unavailable} resumes={reconnects} events={total}")


# --- 3. PostgreSQL restarted under the API -------------------------------------------------


@pytest.mark.timeout(120)
async def test_postgres_restart_under_the_api_is_503_then_recovers(
    restartable: tuple[PrivateCluster, Settings],  # noqa: F811
    spawn_worker: Any,
) -> None:
    cluster, settings = restartable
    workers = [spawn_worker("t-slow", settings_override=settings) for _ in range(2)]
    await asyncio.gather(*(w.started() for w in workers))
    pool = await db.create_pool(settings, min_size=1, max_size=2)
    try:
        key = await alice_key(pool, settings)
    finally:
        await pool.close()
    async for api in serve(settings.replace(sse_keepalive=0.5)):
        api.keys["alice"] = key
        async with api.client("alice") as c, c.stream("GET", "/api/events", params={"channelId": "a1"}) as r:
            stream = SseReader(r)
            first = [
                (await post_job(c, {"type": "t-slow", "channelId": "a1", "payload": {"steps": 5, "step": 0.1}}))[0]
                for _ in range(30)
            ]
            seen = await stream.until(status_is("running"))  # jobs are mid-run

            cluster.stop()
            down_at = time.monotonic()
            async with api.client("alice") as short:
                short.timeout = httpx.Timeout(5.0)  # a hang fails here, not at the test timeout
                began = time.monotonic()
                listed = await short.get("/api/jobs", params={"channelId": "a1"})
                posted = await short.post("/api/jobs", json={"type": "t-slow", "channelId": "a1"})
                ready = await short.get("/readyz")
                answered_in = time.monotonic() - began
            for resp in (listed, posted):
                assert resp.status_code == 503 and resp.headers["content-type"] == PROBLEM, resp.text
                assert resp.json()["type"].endswith("/database-unavailable")
            assert ready.status_code == 503
            await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - down_at)))  # the outage itself
            cluster.start()

            # the same API process, no restart: its pool reconnects on the next request
            second = []
            unavailable = 0
            for i in range(10):
                job, bad = await post_job(c, {"type": "t-slow", "channelId": "a1", "payload": {"steps": 2, "n": i}})
                second.append(job)
                unavailable += bad
            assert (await c.get("/readyz")).status_code == 200
            ids = {j["id"] for j in first + second}
            assert len(ids) == 40
            done: set[str] = set()

            def all_done(e: Sse, done: set[str] = done, ids: set[str] = ids) -> bool:
                if status_is("completed")(e) and e.data:
                    done.add(e.data["jobId"])
                return ids <= done

            seen += await stream.until(all_done, timeout=90)
        conn = await db.connect(settings)
        try:
            per_job = await conn.fetch(
                "SELECT job_id, count(*) AS n FROM pgcue.job_events "
                "WHERE kind = 'job:status' AND data->>'state' = 'completed' GROUP BY job_id"
            )
            table = await table_events(conn, "a1")
        finally:
            await conn.close()
    assert len(per_job) == 40 and {r["n"] for r in per_job} == {1}
    got = event_ids(seen)
    assert len(got) == len(set(got)), "the stream repeated an event across the restart"
    assert set(got) <= set(table) and set(got) >= {i for i in table if i <= max(got)}, "the stream skipped events"
    assert answered_in < 5.0
    for w in workers:
        assert w.proc.poll() is None  # rode it out
    print(f"down answers in {answered_in:.2f}s; 503s after restart={unavailable}; events={len(got)}")


# --- 6. SIGTERM to the API (and the workers) with streams open and jobs running --------------


@pytest.mark.timeout(90)
async def test_sigterm_ends_streams_with_a_final_event_and_exits_in_time(
    api_process: Any, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher, settings: Settings
) -> None:
    key = await alice_key(pool, settings)
    server = await api_process(grace=3.0).ready()
    worker = await spawn_worker("t-slow", env={"PGCUE_SHUTDOWN_GRACE": "2"}).started()
    async with (
        server.client(key) as c,
        c.stream("GET", "/api/events", params={"channelId": "a1"}) as r1,
        c.stream("GET", "/api/events", params={"channelId": "a2"}) as r3,  # an idle one: no event yet
    ):
        long = [
            (await post_job(c, {"type": "t-slow", "channelId": "a1", "payload": {"steps": 400, "step": 0.05}}))[0]
            for _ in range(2)
        ]
        short = (await post_job(c, {"type": "t-slow", "channelId": "a1", "payload": {"steps": 8, "step": 0.1}}))[0]
        async with c.stream("GET", f"/api/jobs/{long[0]['id']}/events") as r2:
            channel, job, idle = SseReader(r1), SseReader(r2), SseReader(r3)
            await job.until(lambda e: e.event == "job:output")
            assert await watcher.until("SELECT count(*) = 3 FROM pgcue.jobs WHERE state = 'running'", timeout=20)
            began = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            worker.signal(signal.SIGTERM)
            ends = [await reader.rest(timeout=10) for reader in (channel, job, idle)]
            streams_ended_in = time.monotonic() - began
    api_exit = await asyncio.to_thread(server.proc.wait, 10)
    api_exit_in = time.monotonic() - began
    worker_exit = await worker.wait_exit(timeout=15)
    worker_exit_in = time.monotonic() - began
    for events in ends:
        assert events and events[-1].event == "shutdown" and events[-1].id, [e.event for e in events]
        assert events[-1].data == {"reason": "server shutting down", "retryMs": 1000}
    assert api_exit in (0, -signal.SIGTERM), api_exit  # uvicorn re-raises the signal it caught
    assert worker_exit == 0
    assert streams_ended_in < 2.0 and api_exit_in < 3.0 + 2.0, (streams_ended_in, api_exit_in)
    assert worker_exit_in < 2.0 + 4.0, worker_exit_in
    # the worker finished what fit in its grace period and gave the rest back, uncharged
    await watcher.states([uuid.UUID(short["id"])], {"completed"}, timeout=10)
    rows = await pool.fetch(
        "SELECT state, attempts FROM pgcue.jobs WHERE id = ANY($1::uuid[])", [j["id"] for j in long]
    )
    assert [(r["state"], r["attempts"]) for r in rows] == [("queued", 0), ("queued", 0)]
    # A new API process: each stream resumes from its final event's id with no gap, no duplicate.
    again = await api_process(grace=3.0).ready()
    async with again.client(key) as c:
        table = set(await table_events(pool, "a1"))  # the given-back jobs' `queued` events came after
        before = event_ids(ends[0])
        async with c.stream(
            "GET", "/api/events", params={"channelId": "a1"}, headers={"Last-Event-ID": ends[0][-1].id or ""}
        ) as r:
            reader = SseReader(r)
            got = list(before)
            async with asyncio.timeout(15):
                while not table <= set(got):
                    ev = await reader.next(timeout=15)
                    assert ev is not None
                    got += event_ids([ev])
        assert len(got) == len(set(got)) and set(got) == table, "resume after shutdown: gap or duplicate"
        assert len(got) > len(before)
        async with c.stream(
            "GET", "/api/events", params={"channelId": "a2"}, headers={"Last-Event-ID": ends[2][-1].id or ""}
        ) as r:
            assert (await c.post("/api/jobs", json={"type": "echo", "channelId": "a2"})).status_code == 201
            nxt = await SseReader(r).next(timeout=10)
            assert nxt is not None and nxt.event == "job:status"
    print(
        f"streams ended in {streams_ended_in:.2f}s, API exited in {api_exit_in:.2f}s ({api_exit}), "
        f"worker in {worker_exit_in:.2f}s"
    )


# --- 7. 500 slow and vanished SSE clients -------------------------------------------------------


class RawSse:
    """An SSE client on a bare socket with a tiny receive buffer: it can stop reading (so
    the server's writes back up) or vanish with a TCP reset."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, key: str, path: str) -> RawSse:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        self = cls(reader, writer)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        await asyncio.wait_for(reader.readuntil(b"retry: 1000"), 20)  # the stream is open
        return self

    async def read_event(self) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(b"\nevent: "), 30)

    def vanish(self) -> None:
        """Close with RST, no goodbye: the server learns of it only from the kernel."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


async def _insert_events(pool: asyncpg.Pool, job_id: uuid.UUID, n: int, size: int) -> None:
    """n job:output events of `size` bytes in channel a1, one transaction and one NOTIFY per 50."""
    text = "x" * size
    for start in range(0, n, 50):
        async with pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data) "
                "VALUES ($1, 'a1', 'alice', 'job:output', $2)",
                [(job_id, {"text": text, "i": i}) for i in range(start, min(n, start + 50))],
            )
            await conn.execute("SELECT pg_notify('pgcue_events', '')")


@pytest.mark.timeout(120)
async def test_500_slow_and_vanished_sse_clients_hold_bounded_memory(
    api_process: Any, pool: asyncpg.Pool, queue: Queue, settings: Settings
) -> None:
    key = await alice_key(pool, settings)
    server = await api_process(options={"sse_backlog": 100, "sse_keepalive": 1.0, "sse_streams_per_key": 1000}).ready()
    (job_id,) = await queue.enqueue_many([NewJob(type="echo", channel_id="a1", owner_id="alice")])
    path = "/api/events?channelId=a1"
    warm = [await RawSse.open(server.port, key, path) for _ in range(10)]  # warm every code path once
    await _insert_events(pool, job_id, 20, 100)
    for w in warm:
        await w.read_event()
        w.vanish()
    await server.until_metric("pgcue_sse_subscribers", lambda v: v == 0)
    rss0 = server.rss_kib()

    clients: list[RawSse] = []
    for _ in range(10):  # 500 connections, 50 at a time
        clients += await asyncio.gather(*(RawSse.open(server.port, key, path) for _ in range(50)))
    assert await server.until_metric("pgcue_sse_subscribers", lambda v: v == 500) == 500
    rss_open = server.rss_kib()
    slow, vanishing = clients[:250], clients[250:]
    # 250 read their first event, then vanish; 250 never read again.
    await _insert_events(pool, job_id, 10, 100)
    await asyncio.gather(*(c.read_event() for c in vanishing))
    for c in vanishing:
        c.vanish()
    await server.until_metric("pgcue_sse_subscribers", lambda v: v == 250)
    # A flood the slow ones cannot take: their sockets and write buffers fill, their
    # backlogs reach the bound and they are cut off, holding nothing more.
    await _insert_events(pool, job_id, 400, 2000)
    sent = await server.until_metric('pgcue_sse_events_sent_total{kind="job:output"}', lambda v: v > 0)
    await asyncio.sleep(1.0)  # let the server write what it can (the fault's own duration)
    rss_flood1 = server.rss_kib()
    await _insert_events(pool, job_id, 400, 2000)
    await asyncio.sleep(1.0)
    rss_flood2 = server.rss_kib()
    for c in slow:
        c.vanish()
    await server.until_metric("pgcue_sse_subscribers", lambda v: v == 0, timeout=30)
    rss_end = server.rss_kib()
    growth_per_flood = rss_flood2 - rss_flood1
    print(
        f"RSS KiB: idle {rss0}, 500 open {rss_open}, flood1 {rss_flood1}, flood2 {rss_flood2}, end {rss_end}; "
        f"events sent {sent}"
    )
    # 500 streams cost little each; 400 more 2 kB events to 250 stuck clients add next to
    # nothing (each is cut off once its bounded backlog fills); nobody is left subscribed.
    assert rss_open - rss0 < 60_000
    assert rss_flood1 - rss0 < 120_000
    assert growth_per_flood < 20_000, growth_per_flood


# --- 4. a long open transaction elsewhere, under load ------------------------------------------


async def _dead_tuples_after_vacuum(conn: Any) -> int:
    await conn.execute("VACUUM pgcue.jobs")
    return int(await conn.fetchval("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'pgcue.jobs'::regclass"))


@pytest.mark.timeout(60)
async def test_long_transaction_holds_vacuum_back_and_shows_in_metrics(
    api: Api, settings: Settings, queue: Queue, spawn_worker: Any, watcher: Watcher
) -> None:
    await spawn_worker("t-quick").started()
    holder = await db.connect(settings, application_name="someone-else")
    vacuumer = await db.connect(settings, application_name="someone-else")
    try:
        tx = holder.transaction(isolation="repeatable_read")
        await tx.start()
        await holder.fetchval("SELECT count(*) FROM pgcue.jobs")  # takes the snapshot: xmin pinned
        xid = "SELECT pg_current_xact_id()::text::bigint"
        xid_before = await vacuumer.fetchval(xid)
        opened = time.monotonic()
        ids = await queue.enqueue_many([NewJob(type="t-quick", channel_id="a1", payload={"n": i}) for i in range(300)])
        await watcher.states(ids, {"completed"}, timeout=30)  # each job's row rewritten ~3 times
        await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - opened)))  # hold it open 3 s (the fault)
        held_for = time.monotonic() - opened
        xids_since = await vacuumer.fetchval(xid) - xid_before  # write transactions since the snapshot
        stuck = await _dead_tuples_after_vacuum(vacuumer)
        async with api.client() as c:
            m = parse_metrics((await c.get("/metrics")).text)
        await tx.rollback()
        freed = await _dead_tuples_after_vacuum(vacuumer)
    finally:
        await holder.close()
        await vacuumer.close()
    oldest = m["pgcue_database_oldest_transaction_seconds"]
    xmin_age = m["pgcue_database_xmin_age_xids"]
    print(
        f"held {held_for:.1f}s: gauge {oldest:.1f}s, xmin age {xmin_age:.0f} xids ({xids_since} since); "
        f"dead tuples {stuck} -> {freed}"
    )
    assert oldest >= held_for - 0.5, (oldest, held_for)  # the gauge shows the open transaction
    assert xmin_age >= xids_since > 0, (xmin_age, xids_since)  # the horizon lags every write since
    assert stuck >= 300 and freed < stuck // 10, (stuck, freed)  # vacuum could not remove them until it ended


# --- 5. cancel through HTTP: queued, running, finished, retries exhausted ----------------------


@pytest.mark.timeout(60)
async def test_cancel_and_retry_exhaustion_through_http(api: Api, spawn_worker: Any, trace_dir: Path) -> None:
    async with api.client("alice") as c:
        queued, _ = await post_job(c, {"type": "t-slow", "channelId": "a1", "payload": {"steps": 2}})
        r = await c.post(f"/api/jobs/{queued['id']}/cancel")
        assert r.status_code == 200 and r.json()["job"]["state"] == "cancelled"

        await spawn_worker("t-slow", "t-flaky").started()
        running, _ = await post_job(c, {"type": "t-slow", "channelId": "a1", "payload": {"steps": 400, "step": 0.05}})
        flaky, _ = await post_job(c, {"type": "t-flaky", "channelId": "a1", "maxAttempts": 3})
        async with c.stream("GET", f"/api/jobs/{running['id']}/events") as s:
            stream = SseReader(s)
            await stream.until(lambda e: e.event == "job:output")
            r = await c.post(f"/api/jobs/{running['id']}/cancel")
            assert r.status_code == 200 and r.json()["job"]["cancelRequested"] is True
            rest = await stream.rest(timeout=20)
        assert rest[-1].event == "job:status" and rest[-1].data and rest[-1].data["state"] == "cancelled"

        r = await c.post(f"/api/jobs/{running['id']}/cancel")  # finished: nothing to cancel
        assert r.status_code == 409 and r.headers["content-type"] == PROBLEM, r.text
        assert r.json()["type"].endswith("/invalid-transition")

        async with c.stream("GET", f"/api/jobs/{flaky['id']}/events") as s:
            await SseReader(s).until(status_is("failed"), timeout=30)
        job = (await c.get(f"/api/jobs/{flaky['id']}")).json()["job"]
    assert job["state"] == "failed" and job["attempts"] == job["maxAttempts"] == 3
    assert [e["attempt"] for e in job["errors"]] == [1, 2, 3]
    assert all(f"attempt {e['attempt']}" in e["error"] for e in job["errors"]), job["errors"]
    runs = read_trace(trace_dir)
    assert not [t for t in runs if t[2] == queued["id"]]  # the cancelled queued job never ran
    assert [t[1] for t in runs if t[2] == running["id"]] == ["start", "running"]  # stopped at a checkpoint
    assert len([t for t in runs if t[2] == flaky["id"]]) == 3
