"""Bounds on live streams (SSE): a resume from far back is replayed a page at a time, in
bounded memory, while the API goes on answering; clients that stop reading are cut off
after PGCUE_SSE_WRITE_TIMEOUT and can resume; a key holds at most
PGCUE_SSE_STREAMS_PER_KEY streams (429 past it); a revoked key's streams end within
seconds. The memory tests run the API as its own process (ApiProcess) to read its RSS."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from pgcue.api.auth import CACHE_SECONDS
from pgcue.api.hub import KEY_CHECK_SECONDS
from pgcue.core.config import Settings
from pgcue.core.models import NewJob
from pgcue.core.queue import Queue
from tests.helpers import rawhttp
from tests.helpers.apiserver import Api, SseReader, serve
from tests.http.test_faults_api import ApiProcess

PROBLEM = "application/problem+json"
EVENT_ID = re.compile(rb'"eventId":(\d+)')
TEXT = 2_000  # characters of output per inserted event
RSS_BOUND_KIB = 60 * 1024  # what a stream may add to the API's memory, at most


@pytest.fixture
def api_processes(settings: Settings) -> Iterator[Any]:
    procs: list[ApiProcess] = []

    def start(**options: Any) -> ApiProcess:
        proc = ApiProcess(settings, options)
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        p.stop()


async def insert_events(pool: asyncpg.Pool, job_id: uuid.UUID, n: int) -> list[int]:
    """n job:output events of TEXT characters in channel a1, in one statement, notified."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data) "
            "SELECT $1, 'a1', 'alice', 'job:output', jsonb_build_object('text', repeat('x', $2), 'i', i) "
            "FROM generate_series(1, $3) AS i RETURNING id",
            job_id,
            TEXT,
            n,
        )
        await conn.execute("SELECT pg_notify('pgcue_events', '')")
    return sorted(r["id"] for r in rows)


def frame_id(frame: bytes) -> str | None:
    """The `id:` line of an SSE frame (its resume cursor)."""
    for line in frame.split(b"\n"):
        if line.startswith(b"id: "):
            return line[4:].decode()
    return None


class RssPeak:
    """Samples a process's RSS every 20 ms until stopped; `peak` is the highest seen."""

    def __init__(self, server: ApiProcess) -> None:
        self.server = server
        self.peak = server.rss_kib()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss_kib())
            try:
                await asyncio.wait_for(self._stop.wait(), 0.02)
            except TimeoutError:
                pass

    async def stop(self) -> int:
        self._stop.set()
        await self._task
        return self.peak


async def replay(
    server: ApiProcess, key: str, last_event_id: str, want: int, *, pause: float = 0.0
) -> tuple[list[int], str | None, int]:
    """Read /api/events?channelId=a1 from `last_event_id` until `want` events came: their
    event ids, the last one's cursor, and the bytes read."""
    stream = await rawhttp.open_stream(
        server.port,
        "/api/events?channelId=a1",
        headers=[(b"Authorization", f"Bearer {key}".encode()), (b"Last-Event-ID", last_event_id.encode())],
    )
    assert stream.answer.status == 200, stream.answer
    ids: list[int] = []
    cursor = None
    size = 0
    try:
        async for frame in rawhttp.sse_frames(stream, pause=pause):
            size += len(frame)
            if (m := EVENT_ID.search(frame)) is not None:
                ids.append(int(m.group(1)))
                cursor = frame_id(frame)
                if len(ids) >= want:
                    break
    finally:
        stream.close()
    return ids, cursor, size


@pytest.mark.timeout(150)
async def test_a_resume_from_far_back_is_replayed_once_in_order_in_bounded_memory(
    api_processes: Any, pool: asyncpg.Pool, queue: Queue
) -> None:
    key = await queue.keys.create("alice", plan="free", channels=["a1"])
    server = await api_processes().ready()
    (job_id,) = await queue.enqueue_many([NewJob(type="echo", channel_id="a1", owner_id="alice")])
    start = (await queue.events.now()).encode()
    # Warm every code path once (a replay of two pages and more), then measure.
    warm = await insert_events(pool, job_id, 1_200)
    async with asyncio.timeout(30):
        got, before, _ = await replay(server, key, start, len(warm))
    assert got == warm and before is not None
    await server.until_metric("pgcue_sse_subscribers", lambda v: v == 0)
    events = 50_000
    ids = await insert_events(pool, job_id, events)
    rss0 = server.rss_kib()
    rss = RssPeak(server)
    health: list[float] = []
    reading = asyncio.Event()

    async def probe_health() -> None:  # /healthz, asked every 100 ms while the replay is read
        async with server.client(timeout=5.0) as c:
            while not reading.is_set():
                began = time.monotonic()
                r = await c.get("/healthz")
                health.append(time.monotonic() - began)
                assert r.status_code == 200
                try:
                    await asyncio.wait_for(reading.wait(), 0.1)
                except TimeoutError:
                    pass

    prober = asyncio.create_task(probe_health())
    began = time.monotonic()
    try:
        async with asyncio.timeout(90):  # a slow client: 64 KiB, then 3 ms of nothing
            got, _, size = await replay(server, key, before, events, pause=0.003)
    finally:
        reading.set()
        await prober
        peak = await rss.stop()
    took = time.monotonic() - began
    growth = peak - rss0
    print(
        f"{len(got)} events, {size / 2**20:.0f} MiB in {took:.1f} s; RSS {rss0} KiB, peak +{growth} KiB; "
        f"/healthz: {len(health)} probes, slowest {max(health):.3f} s"
    )
    assert got == ids, "the replay lost, duplicated or reordered events"
    # holding every event would take more than the bound in their text alone
    assert size > events * TEXT > 1.5 * RSS_BOUND_KIB * 1024
    assert growth < RSS_BOUND_KIB, f"RSS grew {growth} KiB during the replay: it is not read a page at a time"
    assert len(health) >= 5 and max(health) < 1.0, health
    await server.until_metric("pgcue_sse_subscribers", lambda v: v == 0)


@pytest.mark.timeout(120)
async def test_streams_that_stop_reading_are_cut_off_after_the_write_timeout_and_resume(
    api_processes: Any, pool: asyncpg.Pool, queue: Queue
) -> None:
    write_timeout = 2.0
    key = await queue.keys.create("alice", plan="free", channels=["a1"])
    server = await api_processes(sse_write_timeout=write_timeout).ready()
    (job_id,) = await queue.enqueue_many([NewJob(type="echo", channel_id="a1", owner_id="alice")])
    start = (await queue.events.now()).encode()
    ids = await insert_events(pool, job_id, 20_000)  # 40 MB each stream would have to take
    async with asyncio.timeout(30):
        got, _, _ = await replay(server, key, start, 1_200)  # warm every code path once
    assert got == ids[:1_200]
    await server.until_metric("pgcue_sse_subscribers", lambda v: v == 0)
    stalled0 = (await server.metrics()).get("pgcue_sse_stalled_clients_total", 0.0)
    rss0 = server.rss_kib()
    rss = RssPeak(server)
    opened = time.monotonic()
    auth = (b"Authorization", f"Bearer {key}".encode())
    streams = [
        await rawhttp.open_stream(
            server.port, "/api/events?channelId=a1", headers=[auth, (b"Last-Event-ID", start.encode())], rcvbuf=4096
        )
        for _ in range(3)
    ]
    try:
        assert [s.answer.status for s in streams] == [200, 200, 200]
        await server.until_metric("pgcue_sse_subscribers", lambda v: v == 3, timeout=10)
        # nobody reads: each stream's writes back up, and the server ends it
        stalled = await server.until_metric(
            "pgcue_sse_stalled_clients_total", lambda v: v >= stalled0 + 3, timeout=write_timeout + 30
        )
        cut_after = time.monotonic() - opened
        await server.until_metric("pgcue_sse_subscribers", lambda v: v == 0, timeout=10)
        peak = await rss.stop()
        # What each client got before the cut is a gap-free prefix, and the server closed
        # the connection; a resume from its last event goes on with the next one.
        async with asyncio.timeout(30):
            prefixes = []
            for s in streams:
                got_ids: list[int] = []
                last = None
                async for frame in rawhttp.sse_frames(s):
                    if (m := EVENT_ID.search(frame)) is not None:
                        got_ids.append(int(m.group(1)))
                        last = frame_id(frame)
                prefixes.append(got_ids)
                assert got_ids == ids[: len(got_ids)] and 0 < len(got_ids) < len(ids)
                assert last is not None
                again, _, _ = await replay(server, key, last, 1)
                assert again == [ids[len(got_ids)]], "the resume after a cut-off did not go on where it stopped"
    finally:
        for s in streams:
            s.close()
    growth = peak - rss0
    print(
        f"cut off {stalled - stalled0:.0f} streams {cut_after:.1f} s after they opened, having sent "
        f"{[len(p) for p in prefixes]} of {len(ids)} events; RSS peak +{growth} KiB"
    )
    assert stalled == stalled0 + 3
    assert cut_after >= write_timeout
    assert growth < RSS_BOUND_KIB, f"RSS grew {growth} KiB for three stalled streams"


# --- per key: at most PGCUE_SSE_STREAMS_PER_KEY streams ------------------------------------------------


@pytest.fixture
async def capped(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Api]:
    """The API in the test's process with 3 streams per key; keys alice (a1, a2) and bob (b1)."""
    async for running in serve(settings.replace(sse_keepalive=0.5, sse_streams_per_key=3)):
        keys = Queue(pool, settings.schema).keys
        running.keys["alice"] = await keys.create("alice", plan="free", channels=["a1", "a2"])
        running.keys["bob"] = await keys.create("bob", plan="free", channels=["b1"])
        yield running


class Streams:
    """Streams one client holds open, each closed on request or at the end."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.open: list[Any] = []  # (path, context manager)

    async def get(self, path: str) -> httpx.Response:
        """Ask for a stream; a 200 stays open, anything else is read and closed."""
        cm = self.client.stream("GET", path)
        r = await cm.__aenter__()
        if r.status_code == 200:
            self.open.append((path, cm))
        else:
            await r.aread()
            await cm.__aexit__(None, None, None)
        return r

    async def once_free(self, path: str, timeout: float = 10.0) -> httpx.Response:
        """A stream, as soon as the server has freed a slot for it; bounded."""
        deadline = time.monotonic() + timeout
        while (r := await self.get(path)).status_code == 429:
            if time.monotonic() > deadline:
                raise AssertionError(f"no stream slot came free within {timeout} s")
            await asyncio.sleep(0.05)
        return r

    async def close(self, path: str | None = None) -> None:
        """Close the stream of `path` (every stream: None)."""
        for item in [i for i in self.open if path is None or i[0] == path]:
            self.open.remove(item)
            await item[1].__aexit__(None, None, None)


@pytest.mark.timeout(60)
async def test_a_key_holds_at_most_its_streams_and_a_closed_one_frees_its_slot(capped: Api, queue: Queue) -> None:
    (job_id,) = await queue.enqueue_many([NewJob(type="echo", channel_id="a1", owner_id="alice")])
    paths = ["/api/events?channelId=a1", "/api/events?channelId=a2", f"/api/jobs/{job_id}/events"]
    async with capped.client("alice") as a, capped.client("bob") as b:
        alice, bob = Streams(a), Streams(b)
        try:
            for path in paths:  # channel streams and job streams count alike
                assert (await alice.get(path)).status_code == 200
            fourth = await alice.get("/api/events")
            assert fourth.status_code == 429, "a 4th stream of one key was let through"
            assert fourth.headers["content-type"] == PROBLEM and int(fourth.headers["retry-after"]) > 0
            problem = fourth.json()
            assert problem["status"] == 429 and "PGCUE_SSE_STREAMS_PER_KEY" in problem["detail"]
            assert (await bob.get("/api/events?channelId=b1")).status_code == 200  # another key's slots
            # alice closes one: exactly one slot comes free (her refusals took none)
            await alice.close(paths[0])
            assert (await alice.once_free(paths[0])).status_code == 200
            assert (await alice.get("/api/events")).status_code == 429
            # she closes them all, and 20 more clients of hers vanish right after asking:
            # none of them keeps a slot
            await alice.close()
            port = int(capped.url.rsplit(":", 1)[1])
            for _ in range(20):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(
                    f"GET /api/events?channelId=a1 HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {capped.keys['alice']}\r\n\r\n".encode()
                )
                await writer.drain()
                writer.close()
            for path in paths:
                assert (await alice.once_free(path)).status_code == 200
            assert (await alice.get("/api/events")).status_code == 429
        finally:
            await alice.close()
            await bob.close()


# --- a revoked key ------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_a_revoked_keys_open_streams_end_within_seconds_and_it_is_401_after(
    api: Api, queue: Queue, pool: asyncpg.Pool
) -> None:
    (job_id,) = await queue.enqueue_many([NewJob(type="echo", channel_id="a1", owner_id="alice")])
    async with api.client("alice") as alice, api.client("bob") as bob:
        async with (
            alice.stream("GET", "/api/events", params={"channelId": "a1"}) as s1,
            alice.stream("GET", f"/api/jobs/{job_id}/events") as s2,
            bob.stream("GET", "/api/events", params={"channelId": "b1"}) as s3,
        ):
            assert (s1.status_code, s2.status_code, s3.status_code) == (200, 200, 200)
            readers = [SseReader(s1), SseReader(s2)]
            (queued,) = await readers[1].until(lambda e: e.event == "job:status")  # the job's history
            assert queued.data and queued.data["state"] == "queued"
            (key,) = await queue.keys.list("alice")
            await queue.keys.revoke(key.id)
            revoked_at = time.monotonic()
            bound = KEY_CHECK_SECONDS * 2 + 6  # a check interval, one more for a busy machine, slack
            ends = await asyncio.gather(*(r.rest(timeout=bound) for r in readers))
            ended_in = time.monotonic() - revoked_at
            assert ends == [[], []]  # nothing more was sent to them
            for reader in readers:
                assert reader.ended and any("may no longer read" in c for c in reader.comments), reader.comments
            # bob's stream goes on: his job's event reaches it
            r = await bob.post("/api/jobs", json={"type": "echo", "channelId": "b1"})
            assert r.status_code == 201
            bobs = await SseReader(s3).next(timeout=10)
            assert bobs is not None and bobs.data and bobs.data["channelId"] == "b1"
        # the key itself: refused once the auth cache has let it go (at most CACHE_SECONDS)
        deadline = revoked_at + CACHE_SECONDS + 5
        while (r := await alice.get("/api/jobs")).status_code != 401:
            assert r.status_code == 200 and time.monotonic() < deadline, r.status_code
            await asyncio.sleep(0.1)
        assert r.headers["content-type"] == PROBLEM
        async with alice.stream("GET", "/api/events", params={"channelId": "a1"}) as s4:
            assert s4.status_code == 401
    print(f"both streams ended {ended_in:.1f} s after the revoke")
    assert ended_in < bound
