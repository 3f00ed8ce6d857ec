"""Live events over SSE: resume without gap or duplicate, late commits, a killed LISTEN
connection, slow subscribers. Real HTTP, real PostgreSQL, real workers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import pytest

from pgcue.api.hub import WAKE_SLICE, Batch, Subscriber
from pgcue.api.streams import _collect, _render
from pgcue.core.events import Cursor, Event, Snapshot, advance
from tests.conftest import Watcher
from tests.helpers.apiserver import Api, SseReader

pytestmark = pytest.mark.timeout(60)


async def enqueue(api: Api, who: str, **body: Any) -> dict[str, Any]:
    async with api.client(who) as c:
        r = await c.post("/api/jobs", json=body)
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()["job"]
    return job


async def test_resume_with_last_event_id_replays_exactly_the_missed_events(
    api: Api, spawn_worker: Any, watcher: Watcher
) -> None:
    await spawn_worker("t-slow").started()
    job = await enqueue(api, "alice", type="t-slow", channelId="a1", payload={"steps": 6, "step": 0.03})
    path = f"/api/jobs/{job['id']}/events"
    async with api.client("alice") as c:
        async with c.stream("GET", path) as r:
            first = await SseReader(r).until(lambda e: e.event == "job:output")
        # disconnected; the job runs on to the end meanwhile
        await watcher.states([uuid.UUID(job["id"])])
        async with c.stream("GET", path, headers={"Last-Event-ID": first[-1].id or ""}) as r:
            resumed = await SseReader(r).rest()
        async with c.stream("GET", path) as r:
            whole = await SseReader(r).rest()
    got = [e.data["eventId"] for e in first + resumed if e.data]
    assert got == [e.data["eventId"] for e in whole if e.data]
    assert len(set(got)) == len(got)
    assert resumed[-1].data and resumed[-1].data["state"] == "completed"


async def test_event_committed_out_of_order_is_delivered_once(api: Api, pool: asyncpg.Pool) -> None:
    """Transaction A takes event id n and commits after B's id n+1 committed: a live stream
    still gets n, and a client resuming from the id after n+1 gets n and nothing else."""
    job = await enqueue(api, "alice", type="echo", channelId="a1")
    insert = (
        "INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data) "
        "VALUES ($1, 'a1', 'alice', 'job:output', $2) RETURNING id"
    )
    async with api.client("alice") as c, c.stream("GET", "/api/events", params={"channelId": "a1"}) as r:
        live = SseReader(r)
        async with pool.acquire() as a, pool.acquire() as b:
            tx = a.transaction()
            await tx.start()
            late_id = await a.fetchval(insert, uuid.UUID(job["id"]), {"text": "late"})
            async with b.transaction():
                early_id = await b.fetchval(insert, uuid.UUID(job["id"]), {"text": "early"})
                await b.execute("SELECT pg_notify('pgcue_events', '')")
            assert late_id < early_id
            seen = await live.next()
            assert seen is not None and seen.data and seen.data["eventId"] == early_id
            await a.execute("SELECT pg_notify('pgcue_events', '')")
            await tx.commit()
        late = await live.next()
        assert late is not None and late.data and late.data["eventId"] == late_id
        # a client that stopped right after the early event
        async with c.stream("GET", "/api/events", headers={"Last-Event-ID": seen.id or ""}) as r2:
            resumed = SseReader(r2)
            again = await resumed.next()
            assert again is not None and again.data and again.data["eventId"] == late_id
            other = await enqueue(api, "alice", type="echo", channelId="a1")
            nxt = await resumed.next()
            assert nxt is not None and nxt.data and nxt.data["jobId"] == other["id"]
        nxt_live = await live.next()
        assert nxt_live is not None and nxt_live.data and nxt_live.data["jobId"] == other["id"]


async def test_listener_killed_stream_still_delivers(api: Api, pool: asyncpg.Pool) -> None:
    hub = api.hub
    async with api.client("alice") as c, c.stream("GET", "/api/events") as r:
        reader = SseReader(r)
        first = await enqueue(api, "alice", type="echo", channelId="a1")
        ev = await reader.next()
        assert ev is not None and ev.data and ev.data["jobId"] == first["id"]
        await asyncio.wait_for(hub.listening.wait(), 10)
        killed = await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'pgcue-api-listen' AND datname = current_database()"
        )
        assert killed == 1
        # the hub notices, reconnects and listens again (a new backend)
        for _ in range(200):
            if not hub.listening.is_set():
                break
            await asyncio.sleep(0.01)
        await asyncio.wait_for(hub.listening.wait(), 10)
        again = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'pgcue-api-listen' AND datname = current_database()"
        )
        assert again == 1
        later = await enqueue(api, "alice", type="echo", channelId="a2")
        ev = await reader.next()
        assert ev is not None and ev.data and ev.data["jobId"] == later["id"]


async def test_slow_subscriber_is_cut_off_and_resumes(api: Api, pool: asyncpg.Pool) -> None:
    """A subscriber that does not drain its backlog is dropped once it exceeds its bound,
    holding no more events; resuming from its cursor replays everything it missed."""
    hub = api.hub
    sub = Subscriber(channels=frozenset({"a1"}), limit=3)
    await hub.subscribe(sub)
    start = await hub.now()
    ids = [(await enqueue(api, "alice", type="echo", channelId="a1"))["id"] for _ in range(5)]
    async with asyncio.timeout(10):
        while not sub.overflowed:
            await hub.poll()
    assert len(sub.backlog) == 0 and hub.subscribers == 0
    events, snap = await hub.replay(sub, start)
    replayed = [str(e.job_id) for e, _ in advance(start, events, snap)]
    assert replayed == ids
    cursor = Cursor.decode(start.encode())
    assert cursor == start


async def test_keepalive_comments(api: Api) -> None:
    async with api.client("bob") as c, c.stream("GET", "/api/events") as r:
        reader = SseReader(r)
        with pytest.raises(TimeoutError):
            await reader.next(timeout=1.2)
    assert any("keep-alive" in line for line in reader.comments)


# --- fan-out: shared batches, one chunk per wake-up ---------------------------------------


def _parse_frames(chunk: bytes) -> list[dict[str, str]]:
    """The SSE frames in a chunk, as {field: value} (what an EventSource would see)."""
    frames = []
    for raw in chunk.decode().split("\n\n"):
        if raw:
            frames.append(dict(line.split(": ", 1) for line in raw.split("\n")))
    return frames


def _events(job: uuid.UUID, *specs: tuple[int, int, str, dict[str, Any]]) -> list[Event]:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return [Event(i, tx, job, "a1", kind, data, at) for i, tx, kind, data in specs]


def test_several_events_in_one_chunk_are_separate_frames_with_exact_ids() -> None:
    """Two batches taken at one wake-up become one chunk; each event is its own frame whose
    id: is exactly the cursor advance() gives it, late commits (extra ids) included."""
    job = uuid.uuid4()
    # Delivered: everything visible in 100:105:103 up to id 10. Id 8 (tx 103) commits late.
    cursor = Cursor(10, Snapshot(100, 105, frozenset({103})))
    snap1 = Snapshot(106, 106)
    first = _events(job, (8, 103, "job:output", {"text": "late"}), (11, 104, "job:status", {"state": "running"}))
    snap2 = Snapshot(108, 108)
    second = _events(job, (12, 107, "job:progress", {"progress": 50}), (13, 107, "job:status", {"state": "completed"}))
    chunk, after, ended = _collect([Batch(first, snap1), Batch(second, snap2)], cursor, until_terminal=False)
    expected = advance(cursor, first, snap1)
    expected += advance(expected[-1][1], second, snap2)
    frames = _parse_frames(chunk)
    assert [f["id"] for f in frames] == [c.encode() for _, c in expected]
    assert [f["event"] for f in frames] == ["job:output", "job:status", "job:progress", "job:status"]
    assert [msgspec.json.decode(f["data"])["eventId"] for f in frames] == [8, 11, 12, 13]
    assert frames[0]["id"] == "10:100:105:103:8"  # the late event is recorded as an extra id
    assert Cursor.decode(frames[-1]["id"]) == after == Cursor(13, snap2)
    assert not ended
    # A job stream stops at its terminal event, even with more frames pending after it.
    tail = _events(job, (14, 108, "job:output", {"text": "after the end"}))
    chunk, after, ended = _collect([Batch(second + tail, snap2)], Cursor(11, snap1), until_terminal=True)
    assert [f["event"] for f in _parse_frames(chunk)] == ["job:progress", "job:status"]
    assert ended and after == Cursor(13, snap2)


def test_a_batch_is_framed_once_per_distinct_cursor() -> None:
    """Subscribers holding equal cursors (equal, not the same object) share one rendering;
    a subscriber behind them gets its own, with the frames it still lacks."""
    job = uuid.uuid4()
    snap = Snapshot(200, 200)
    batch = Batch(_events(job, (21, 150, "job:status", {"state": "queued"}), (22, 151, "job:output", {})), snap)
    caught_up = Cursor(20, Snapshot(150, 150))
    a = _render(batch, caught_up, False)
    b = _render(batch, Cursor.decode(caught_up.encode()), False)
    assert a is b
    behind = Cursor(21, Snapshot(150, 152, frozenset({151})))  # has 21, lacks 22 (tx 151 running)
    c = _render(batch, behind, False)
    assert c is not a and [f["id"] for f in _parse_frames(c.chunk)] == [Cursor(22, snap).encode()]
    assert a.cursor == c.cursor == Cursor(22, snap)


async def test_one_poll_wakes_every_subscriber_with_one_shared_batch(api: Api) -> None:
    """More subscribers than one wake slice: all are woken (slice after slice), and those
    with the same filter hold the very same Batch; another channel's subscriber gets none."""
    hub = api.hub
    subs = [Subscriber(channels=frozenset({"a1"})) for _ in range(3 * WAKE_SLICE + 5)]
    other = Subscriber(channels=frozenset({"b1"}))
    for sub in [*subs, other]:
        await hub.subscribe(sub)
    try:
        waiters = [sub.waiter() for sub in subs]
        job = await enqueue(api, "alice", type="echo", channelId="a1")
        async with asyncio.timeout(10):
            while not all(sub.backlog for sub in subs):
                await hub.poll()
            await asyncio.gather(*waiters)
        assert all(sub.ready for sub in subs) and not other.backlog
        batches = {id(sub.backlog[0]) for sub in subs}
        assert len(batches) == 1
        assert str(subs[0].backlog[0].events[0].job_id) == job["id"]
    finally:
        for sub in [*subs, other]:
            hub.unsubscribe(sub)


async def test_events_of_one_transaction_arrive_as_separate_events_and_resume_exactly(
    api: Api, pool: asyncpg.Pool
) -> None:
    """Three events committed together are read in one poll and written in one chunk; the
    client still sees three events, each with its own id, and resuming from the first id
    gives exactly the other two."""
    job = await enqueue(api, "alice", type="echo", channelId="a1")
    insert = (
        "INSERT INTO pgcue.job_events (job_id, channel_id, owner_id, kind, data) "
        "VALUES ($1, 'a1', 'alice', 'job:output', $2) RETURNING id"
    )
    async with api.client("alice") as c:
        async with c.stream("GET", "/api/events", params={"channelId": "a1"}) as r:
            live = SseReader(r)
            await asyncio.wait_for(api.hub.listening.wait(), 10)
            async with pool.acquire() as conn, conn.transaction():
                ids = [await conn.fetchval(insert, uuid.UUID(job["id"]), {"text": f"line {i}"}) for i in range(3)]
                await conn.execute("SELECT pg_notify('pgcue_events', '')")
            got = [await live.next() for _ in ids]
        assert [e.data["eventId"] for e in got if e and e.data] == ids
        assert len({e.id for e in got if e}) == 3
        async with c.stream("GET", "/api/events", headers={"Last-Event-ID": got[0].id or ""}) as r:
            resumed = SseReader(r)
            rest = [await resumed.next() for _ in ids[1:]]
            assert [e.data["eventId"] for e in rest if e and e.data] == ids[1:]
            assert [e.id for e in rest] == [e.id for e in got[1:] if e]
            later = await enqueue(api, "alice", type="echo", channelId="a1")
            nxt = await resumed.next()
            assert nxt is not None and nxt.data and nxt.data["jobId"] == later["id"]
