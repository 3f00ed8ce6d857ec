"""pgcue.client under faults, with real processes (`pgcue serve`, workers) and a TCP proxy
that loses answers (tests/helpers/faultproxy.py); each test once with Client and once with
AsyncClient. A job's events across two restarts of the API (SIGTERM, then SIGKILL) come
once each; an enqueue whose answer was lost after the server committed, retried, makes one
job; calls that cannot be repeated safely are not; downloads resume; wait() keeps its
deadline against a server whose keep-alives come every 15 s, and polls when it may not
stream."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from pgcue.client import NO_RETRY, JobStatus, ServiceUnavailable, TransportError, WaitTimeout
from pgcue.core.config import Settings
from pgcue.core.models import NewJob
from pgcue.core.queue import Queue
from pgcue.workers.runtime import registry
from tests.conftest import make_settings
from tests.helpers.apiprocess import ServeProcess
from tests.helpers.apiserver import Api
from tests.helpers.clients import Pg
from tests.helpers.clienttypes import pattern
from tests.helpers.faultproxy import FaultProxy, fault_proxy

pytestmark = pytest.mark.timeout(120)

CLIENT_TYPES = ["--import", "tests.helpers.clienttypes"]


@pytest.fixture
def settings(database: str, tmp_path: Path) -> Settings:
    return make_settings(database, artifacts_dir=str(tmp_path / "artifacts"))


@pytest.fixture(autouse=True)
async def client_types(queue: Queue) -> None:
    await queue.register_types([registry.get(name).row() for name in ("t-artifact", "t-second-try")])


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def clients(kind: str) -> AsyncIterator[Callable[..., Pg]]:
    made: list[Pg] = []

    def make(url: str, key: str, **options: Any) -> Pg:
        pg = Pg(kind, url, key, **options)
        made.append(pg)
        return pg

    yield make
    for pg in made:
        await pg.close()


@pytest.fixture
async def servers(settings: Settings) -> AsyncIterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def make(**options: Any) -> ServeProcess:
        server = ServeProcess(settings, options=options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.kill()


@pytest.fixture
async def proxy(api: Api) -> AsyncIterator[FaultProxy]:
    async with fault_proxy(urlsplit(api.url).port or 0) as running:
        yield running


async def alice(pool: asyncpg.Pool, settings: Settings) -> str:
    return await Queue(pool, settings.schema).keys.create("alice", plan="free", channels=["a1", "a2"])


async def until(pred: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def db_event_ids(pool: asyncpg.Pool, job_ids: list[str]) -> list[int]:
    rows = await pool.fetch("SELECT id FROM pgcue.job_events WHERE job_id = ANY($1::uuid[]) ORDER BY id", job_ids)
    return [r["id"] for r in rows]


# --- a job's events across restarts of the API ----------------------------------------------


async def test_a_jobs_events_across_two_api_restarts_come_once_each(
    clients: Callable[..., Pg],
    servers: Callable[..., ServeProcess],
    spawn_worker: Any,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    key = await alice(pool, settings)
    server = await servers().ready()
    await spawn_worker("t-slow").started()
    pg = clients(server.url, key)
    job = await pg.enqueue("t-slow", "a1", {"steps": 150, "step": 0.1})  # ~15 s of output and progress
    stream = pg.events(job)
    got: list[Any] = []

    async def consume() -> None:
        async for event in stream:
            got.append(event)

    consumer = asyncio.ensure_future(consume())
    states_at_restart = []
    for sig in (signal.SIGTERM, signal.SIGKILL):  # a stop that says so (event: shutdown), then a crash
        seen = len(got)
        await until(lambda seen=seen: len(got) >= seen + 10, what="events before the restart")
        states_at_restart.append(await pool.fetchval("SELECT state FROM pgcue.jobs WHERE id = $1::uuid", job.id))
        await server.stop(sig)
        await server.start().ready()
    await asyncio.wait_for(consumer, 60)  # the stream ends by itself after the final status

    assert states_at_restart == ["running", "running"]  # both restarts came in the middle of the job
    ids = [e.event_id for e in got]
    assert len(ids) == len(set(ids)), "an event came twice"
    assert sorted(ids) == await db_event_ids(pool, [job.id]), "an event is missing"
    assert isinstance(got[-1], JobStatus) and got[-1].state == "completed"
    assert stream.reconnects >= 2
    assert server.starts == 3


async def test_a_channel_stream_cut_before_its_first_event_misses_nothing(
    clients: Callable[..., Pg],
    servers: Callable[..., ServeProcess],
    pool: asyncpg.Pool,
    settings: Settings,
    queue: Queue,
) -> None:
    """A channel stream starts "now"; its opening frame's id lets it resume from there
    after the server dies, so the jobs enqueued while it was down are not lost."""
    key = await alice(pool, settings)
    server = await servers().ready()
    pg = clients(server.url, key)
    stream = pg.events(channel_id="a1")
    got: list[Any] = []

    async def consume() -> None:
        async for event in stream:
            got.append(event)
            if len(got) == 3:  # one `queued` event for each of the three jobs (no worker runs them)
                return

    consumer = asyncio.ensure_future(consume())
    await until(lambda: stream.last_event_id is not None, what="the stream to open")
    await server.stop(signal.SIGKILL)
    ids = await queue.enqueue_many([NewJob(type="t-count", channel_id="a1", payload={"n": i}) for i in range(3)])
    await server.start().ready()
    await asyncio.wait_for(consumer, 60)
    await stream.aclose()
    expected = await db_event_ids(pool, [str(i) for i in ids])
    assert sorted(e.event_id for e in got) == expected


# --- lost answers -------------------------------------------------------------------------


async def test_an_enqueue_whose_answer_is_lost_is_retried_and_makes_one_job(
    clients: Callable[..., Pg], proxy: FaultProxy, api: Api, pool: asyncpg.Pool
) -> None:
    pg = clients(proxy.url, api.keys["alice"])
    proxy.add("POST", "/api/jobs", "drop")  # forwarded, answered by the API, the answer dropped
    job = await pg.enqueue("t-count", "a1", {"n": 1})

    posts = proxy.seen_for("POST", "/api/jobs")
    assert [p.action for p in posts] == ["drop", "pass"]
    keys = {p.headers["idempotency-key"] for p in posts}
    assert len(keys) == 1  # the retry carried the first try's key
    rows = await pool.fetch("SELECT id, idempotency_key FROM pgcue.jobs WHERE channel_id = 'a1'")
    assert [str(r["id"]) for r in rows] == [job.id]  # one job, the one the client got
    assert rows[0]["idempotency_key"] == keys.pop()

    # Without retries the same loss is an error, though the job exists: what the key is for.
    once = clients(proxy.url, api.keys["alice"], retry=NO_RETRY)
    proxy.add("POST", "/api/jobs", "drop")
    with pytest.raises(TransportError):
        await once.enqueue("t-count", "a1", {"n": 2})
    assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs WHERE channel_id = 'a1'") == 2


async def test_calls_that_must_not_run_twice_are_not_retried(
    clients: Callable[..., Pg], proxy: FaultProxy, api: Api, pool: asyncpg.Pool
) -> None:
    pg = clients(proxy.url, api.keys["alice"])
    job = await pg.enqueue("t-count", "a1", run_at=datetime.now(UTC) + timedelta(hours=1))
    path = f"/api/jobs/{job.id}/cancel"

    proxy.add("POST", path, "drop")
    with pytest.raises(TransportError):
        await pg.cancel(job)
    assert [s.action for s in proxy.seen_for("POST", path)] == ["drop"]  # one try only
    assert await pool.fetchval("SELECT state FROM pgcue.jobs WHERE id = $1::uuid", job.id) == "cancelled"

    proxy.add("POST", f"/api/jobs/{job.id}/retry", "503")
    with pytest.raises(ServiceUnavailable) as unavailable:
        await pg.retry(job)
    assert unavailable.value.status == 503 and unavailable.value.retry_after == 0
    assert len(proxy.seen_for("POST", f"/api/jobs/{job.id}/retry")) == 1

    # A read is retried through 503s (and the job is there, cancelled).
    proxy.add("GET", f"/api/jobs/{job.id}", "503", times=2)
    assert (await pg.get(job)).state == "cancelled"
    assert [s.action for s in proxy.seen_for("GET", f"/api/jobs/{job.id}")] == ["503", "503", "pass"]


async def test_a_download_cut_midway_resumes_where_it_stopped(
    clients: Callable[..., Pg], proxy: FaultProxy, api: Api, spawn_worker: Any, settings: Settings
) -> None:
    await spawn_worker("t-artifact", extra=CLIENT_TYPES, env={"PGCUE_ARTIFACTS_DIR": settings.artifacts_dir}).started()
    pg = clients(proxy.url, api.keys["alice"])
    size = 2_000_000
    job = await pg.wait(await pg.enqueue("t-artifact", "a1", {"size": size}), timeout=30)
    path = f"/api/jobs/{job.id}/artifact"
    proxy.add("GET", path, "cut", cut_after=700_000)
    assert await pg.artifact(job) == pattern(size)
    tries = proxy.seen_for("GET", path)
    assert [t.action for t in tries] == ["cut", "pass"]
    assert "range" not in tries[0].headers and tries[1].headers["range"] == "bytes=700000-"

    proxy.add("GET", path, "cut", cut_after=1000)  # a range cut short resumes within the range
    assert await pg.artifact(job, byte_range=(500, 5499)) == pattern(size)[500:5500]
    assert proxy.seen_for("GET", path)[-1].headers["range"] == "bytes=1500-5499"


# --- wait(): the deadline, and polling -------------------------------------------------------


async def test_wait_keeps_its_deadline_when_the_server_sends_only_keep_alives(
    clients: Callable[..., Pg], servers: Callable[..., ServeProcess], pool: asyncpg.Pool, settings: Settings
) -> None:
    """The server's keep-alives come every 15 s; a read of the stream must not outlast the
    deadline (the synchronous client has no other way to stop a blocking read)."""
    key = await alice(pool, settings)
    server = await servers().ready()  # the default keep-alive interval, 15 s
    pg = clients(server.url, key)
    job = await pg.enqueue("t-count", "a1", run_at=datetime.now(UTC) + timedelta(hours=1))
    for timeout in (2.0, 0.5):
        began = time.monotonic()
        with pytest.raises(WaitTimeout):
            await pg.wait(job, timeout=timeout)
        took = time.monotonic() - began
        assert timeout - 0.05 <= took < timeout + 1.5, (timeout, took)


async def test_wait_polls_when_the_key_may_open_no_more_streams(
    clients: Callable[..., Pg],
    servers: Callable[..., ServeProcess],
    spawn_worker: Any,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    key = await alice(pool, settings)
    server = await servers(sse_streams_per_key=1).ready()
    await spawn_worker("t-count").started()
    pg = clients(server.url, key)
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as raw,
        raw.stream("GET", "/api/events", params={"channelId": "a2"}) as held,  # the key's one stream
    ):
        assert held.status_code == 200
        job = await pg.enqueue("t-count", "a1", run_at=datetime.now(UTC) + timedelta(seconds=1.5))
        began = time.monotonic()
        done = await pg.wait(job, timeout=30, poll_interval=0.3)  # its stream is refused (429): it polls
        assert done.state == "completed"
        assert time.monotonic() - began < 10
