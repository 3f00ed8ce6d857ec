"""Live events over SSE: resume without gap or duplicate, late commits, a killed LISTEN
connection, slow subscribers. Real HTTP, real PostgreSQL, real workers."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from service.events import Cursor, Subscriber, advance
from tests.apiserver import Api, SseReader
from tests.conftest import Watcher

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
