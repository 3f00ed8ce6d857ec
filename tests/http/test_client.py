"""pgcue.client against the real API and real worker processes, each test once with the
synchronous Client and once with AsyncClient (the `kind` parameter; tests/helpers/clients.py
runs one body against either). Seed 003's polling example is rewritten with wait() for
each outcome: completed with its resultPath, failed with its message, cancelled, and a
pipeline run waiting for a person, told at once instead of after the timeout."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from pgcue.client import (
    AwaitingApproval,
    BadRequest,
    Conflict,
    EnqueueManyFailed,
    Forbidden,
    JobCancelled,
    JobFailed,
    JobOutput,
    JobProgress,
    JobStatus,
    NewJobBody,
    NotFound,
    RangeNotSatisfiable,
    StageUpdated,
    Unauthorized,
    Unprocessable,
    WaitTimeout,
)
from pgcue.client.events import KINDS
from pgcue.core.config import Settings
from pgcue.core.queue import Queue
from pgcue.core.wire import EventOut
from pgcue.workers.runtime import registry
from tests.conftest import make_settings
from tests.helpers.apiserver import Api
from tests.helpers.clients import Pg, collect
from tests.helpers.clienttypes import pattern

pytestmark = pytest.mark.timeout(90)

CLIENT_TYPES = ["--import", "tests.helpers.clienttypes"]
PIPELINE_TYPES = ["--import", "tests.helpers.pipelinetypes"]


@pytest.fixture
def settings(database: str, tmp_path: Path) -> Settings:
    return make_settings(database, artifacts_dir=str(tmp_path / "artifacts"))


@pytest.fixture(autouse=True)
async def client_types(queue: Queue) -> None:
    """The tests' own types exist before the first enqueue (workers register theirs when
    they start, which may come later)."""
    import tests.helpers.pipelinetypes  # noqa: F401  (registers its types here; clienttypes is imported above)

    names = ("t-artifact", "t-second-try", "p-work", "p-review")
    await queue.register_types([registry.get(name).row() for name in names])


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def client_for(api: Api, kind: str) -> AsyncIterator[Callable[..., Pg]]:
    made: list[Pg] = []

    def make(who: str | None, **options: Any) -> Pg:
        pg = Pg(kind, api.url, api.keys[who] if who else "nobody's key", **options)
        made.append(pg)
        return pg

    yield make
    for pg in made:
        await pg.close()


async def db_event_ids(pool: asyncpg.Pool, job_id: str) -> list[int]:
    rows = await pool.fetch("SELECT id FROM pgcue.job_events WHERE job_id = $1::uuid ORDER BY id", job_id)
    return [r["id"] for r in rows]


def ids_of(events: list[Any]) -> list[int]:
    return [e.event_id for e in events]


# --- seed 003, rewritten -------------------------------------------------------------------


async def test_wait_returns_the_completed_job_with_its_result_path(
    client_for: Callable[..., Pg], spawn_worker: Any
) -> None:
    await spawn_worker("t-slow").started()
    pg = client_for("alice")
    # Seed 003's wait_for_completion(job_id) is this one call; it returns the job.
    job = await pg.wait(await pg.enqueue("t-slow", "a1", {"steps": 3, "step": 0.05}), timeout=30)
    assert job.state == "completed"
    assert job.result_path == f"/artifacts/{job.id}.txt"
    assert job.result == {"steps": 3}
    assert job.completed_at is not None and job.duration_ms is not None
    again = await pg.wait(job.id, timeout=5)  # already finished: answered from one read
    assert again.id == job.id and again.state == "completed"


async def test_wait_raises_job_failed_with_the_error_message_and_attempts(
    client_for: Callable[..., Pg], spawn_worker: Any
) -> None:
    await spawn_worker("t-permanent", "t-flaky").started()
    pg = client_for("alice")
    with pytest.raises(JobFailed) as failed:
        await pg.wait(await pg.enqueue("t-permanent", "a1"), timeout=30)
    assert failed.value.message == "PermanentError: the input can never work"  # the job's errorMessage
    assert failed.value.message == failed.value.job.error_message
    assert failed.value.attempts == 1
    assert failed.value.job.state == "failed" and failed.value.job.result_path is None

    # Retried automatically (three attempts, backing off), then failed for good.
    with pytest.raises(JobFailed) as flaky:
        await pg.wait(await pg.enqueue("t-flaky", "a1"), timeout=30)
    assert flaky.value.attempts == 3
    assert flaky.value.message == "RuntimeError: flaky failure on attempt 3"
    assert [e["attempt"] for e in flaky.value.errors] == [1, 2, 3]
    assert "failed after 3 attempt(s): RuntimeError: flaky failure on attempt 3" in str(flaky.value)


async def test_wait_raises_job_cancelled_for_a_running_and_a_queued_job(
    client_for: Callable[..., Pg], spawn_worker: Any
) -> None:
    await spawn_worker("t-slow").started()
    pg = client_for("alice")
    job = await pg.enqueue("t-slow", "a1", {"steps": 600, "step": 0.05})
    waiter = asyncio.ensure_future(pg.wait(job, timeout=60))
    async with pg.events(job) as stream:
        await collect(stream, until=lambda e: isinstance(e, JobStatus) and e.state == "running")
    assert not waiter.done()
    asked = await pg.cancel(job)
    assert asked.cancel_requested and asked.state == "running"  # it stops at its next checkpoint
    with pytest.raises(JobCancelled) as cancelled:
        await asyncio.wait_for(waiter, 30)
    assert cancelled.value.job.state == "cancelled"
    assert cancelled.value.job.cancel_requested is True
    assert cancelled.value.job.error_message == "Job cancelled by user request"

    later = await pg.enqueue("t-slow", "a1", run_at=datetime.now(UTC) + timedelta(hours=1))
    assert (await pg.cancel(later)).state == "cancelled"  # a queued job: at once
    with pytest.raises(JobCancelled):
        await pg.wait(later, timeout=10)
    with pytest.raises(Conflict) as finished:
        await pg.cancel(later)
    assert finished.value.status == 409


async def test_a_pipeline_run_waiting_for_approval_is_told_at_once_not_after_the_timeout(
    client_for: Callable[..., Pg], spawn_worker: Any
) -> None:
    await spawn_worker("orchestrate", "p-work", extra=PIPELINE_TYPES).started()
    pg = client_for("carol")  # orchestrate needs the paid plan
    run = await pg.enqueue("orchestrate", "c1", {"pipeline": "t-approve"})
    began = time.monotonic()
    with pytest.raises(AwaitingApproval) as paused:
        await pg.wait(run, timeout=300)
    assert time.monotonic() - began < 30  # the pause itself, not the 300 s timeout
    assert paused.value.job.state == "queued"
    assert paused.value.job.waiting_for == "approval"
    assert paused.value.stage == "draft"
    view = await pg.stages(run)
    assert [(s.name, s.state) for s in view.stages] == [("draft", "awaiting_approval"), ("publish", "pending")]

    # Rejected: the stage runs again with the feedback and waits again.
    rejected = await pg.reject(run, "make it punchier")
    assert rejected.stages[0].name == "draft"
    with pytest.raises(AwaitingApproval):
        await pg.wait(run, timeout=60)
    assert (await pg.stages(run)).stages[0].iteration == 2

    approved = await pg.approve(run)
    assert approved.waiting_for is None
    done = await pg.wait(run, timeout=60)
    assert done.state == "completed"
    with pytest.raises(Conflict):  # nothing waits for a decision any more
        await pg.approve(run)


async def test_wait_can_wait_through_an_approval(client_for: Callable[..., Pg], spawn_worker: Any) -> None:
    await spawn_worker("orchestrate", "p-work", extra=PIPELINE_TYPES).started()
    pg = client_for("carol")
    other = client_for("carol")
    run = await pg.enqueue("orchestrate", "c1", {"pipeline": "t-approve"})
    waiter = asyncio.ensure_future(pg.wait(run, timeout=60, stop_at_approval=False))
    while (await other.get(run)).waiting_for != "approval":  # bounded by the test's timeout
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    assert not waiter.done()
    await other.approve(run)
    assert (await asyncio.wait_for(waiter, 60)).state == "completed"


async def test_wait_times_out_on_time(client_for: Callable[..., Pg]) -> None:
    pg = client_for("alice")
    job = await pg.enqueue("t-count", "a1", run_at=datetime.now(UTC) + timedelta(hours=1))
    began = time.monotonic()
    with pytest.raises(WaitTimeout) as timeout:
        await pg.wait(job, timeout=1.5)
    took = time.monotonic() - began
    assert 1.4 <= took < 4.0, took
    assert timeout.value.job.state == "queued"
    assert isinstance(timeout.value, TimeoutError)


# --- events --------------------------------------------------------------------------------


async def test_a_jobs_events_are_every_event_of_its_history_once_and_typed(
    client_for: Callable[..., Pg], spawn_worker: Any, pool: asyncpg.Pool
) -> None:
    await spawn_worker("t-stages").started()
    pg = client_for("alice")
    job = await pg.enqueue("t-stages", "a1")
    stream = pg.events(job)
    events = await collect(stream)  # ends by itself after the final status
    assert sorted(ids_of(events)) == await db_event_ids(pool, job.id)
    assert len(set(ids_of(events))) == len(events)
    assert stream.last_event_id is not None

    statuses = [e.state for e in events if isinstance(e, JobStatus)]
    assert statuses == ["queued", "running", "completed"]
    assert [e.stage for e in events if isinstance(e, StageUpdated)] == ["draft", "review", "publish"]
    assert "".join(e.text for e in events if isinstance(e, JobOutput)) == "draft done\nreview done\npublish done\n"
    assert [e.progress for e in events if isinstance(e, JobProgress)][-1] == 100
    assert all(e.job_id == job.id and e.channel_id == "a1" for e in events)
    assert statuses and isinstance(events[-1], JobStatus) and events[-1].state == "completed"


async def test_every_event_the_server_sends_is_one_of_the_wire_structs(
    client_for: Callable[..., Pg], spawn_worker: Any, pool: asyncpg.Pool
) -> None:
    """The typed events are the one definition of the events' data: every key the server
    writes is a field of its struct (but the fields a handler adds to ctx.stage())."""
    await spawn_worker("t-stages", "t-flaky", "orchestrate", "p-work", "p-review", extra=PIPELINE_TYPES).started()
    pg = client_for("carol")
    jobs = [
        await pg.enqueue("t-stages", "c1"),
        await pg.enqueue("t-flaky", "c1", {"succeedOn": 2}),
        await pg.enqueue("orchestrate", "c1", {"pipeline": "t-review"}),
    ]
    for job in jobs:
        await pg.wait(job, timeout=60)
    rows = await pool.fetch(
        "SELECT kind, data FROM pgcue.job_events WHERE job_id = ANY($1::uuid[])", [j.id for j in jobs]
    )

    framed = {f.encode_name for f in msgspec.structs.fields(EventOut)}  # added by the stream, not stored
    assert framed == {"eventId", "jobId", "channelId", "createdAt"}
    for row in rows:
        data = json.loads(row["data"]) if isinstance(row["data"], str) else row["data"]
        struct = KINDS[row["kind"]]
        names = {f.encode_name for f in msgspec.structs.fields(struct)} - framed
        extra = set(data) - names
        if row["kind"] == "stage:updated" and "position" not in data:
            extra -= {"note"}  # t-stages' own ctx.stage(name, note=...)
        assert not extra, (row["kind"], data)


async def test_a_retried_jobs_stream_follows_the_retry_to_its_end(
    client_for: Callable[..., Pg], spawn_worker: Any, pool: asyncpg.Pool
) -> None:
    """A job's stream ends after a final status; after a retry that status is history,
    and a stream from the start goes on through it to the job's real end."""
    await spawn_worker("t-second-try", extra=CLIENT_TYPES).started()
    pg = client_for("alice")
    job = await pg.enqueue("t-second-try", "a1", max_attempts=1)
    with pytest.raises(JobFailed):
        await pg.wait(job, timeout=30)
    assert (await pg.retry(job)).state in ("queued", "running", "completed")  # read after the retry
    events = await collect(pg.events(job))
    assert [e.state for e in events if isinstance(e, JobStatus)] == [
        "queued",
        "running",
        "failed",
        "queued",
        "running",
        "completed",
    ]
    assert sorted(ids_of(events)) == await db_event_ids(pool, job.id)
    assert (await pg.wait(job, timeout=10)).state == "completed"  # the old failure does not fool it


async def test_channel_events_from_now_and_resumed_from_an_id(
    client_for: Callable[..., Pg], spawn_worker: Any, pool: asyncpg.Pool
) -> None:
    await spawn_worker("t-count").started()
    pg = client_for("alice")
    before = await pg.enqueue("t-count", "a1", {"n": 0})
    await pg.wait(before, timeout=30)
    stream = pg.events(channel_id="a1")
    pending = asyncio.ensure_future(
        collect(stream, until=lambda e: isinstance(e, JobStatus) and e.state == "completed", timeout=30)
    )
    for _ in range(200):  # the opening frame's id: the stream is open (bounded: 10 s)
        if stream.last_event_id is not None:
            break
        await asyncio.sleep(0.05)
    assert stream.last_event_id is not None
    job = await pg.enqueue("t-count", "a1", {"n": 1})
    events = await pending
    assert all(e.job_id == job.id for e in events)  # nothing of the job before the stream
    assert sorted(ids_of(events)) == await db_event_ids(pool, job.id)
    resume_from = stream.last_event_id
    await stream.aclose()

    third = await pg.enqueue("t-count", "a1", {"n": 2})
    await pg.wait(third, timeout=30)
    resumed = pg.events(channel_id="a1", last_event_id=resume_from)
    later = await collect(resumed, until=lambda e: isinstance(e, JobStatus) and e.state == "completed")
    await resumed.aclose()
    assert sorted(ids_of(later)) == await db_event_ids(pool, third.id)


# --- calls and their errors ----------------------------------------------------------------


async def test_problems_become_exceptions_with_status_title_detail_and_field(
    client_for: Callable[..., Pg],
) -> None:
    alice, bob = client_for("alice"), client_for("bob")
    job = await alice.enqueue("t-count", "a1", run_at=datetime.now(UTC) + timedelta(hours=1))

    with pytest.raises(NotFound) as hidden:  # another tenant's job is not found, not forbidden
        await bob.get(job)
    assert hidden.value.status == 404 and hidden.value.title == "Not found" and job.id in hidden.value.detail

    with pytest.raises(Unprocessable) as unknown:
        await alice.enqueue("no-such-type", "a1")
    assert unknown.value.status == 422 and unknown.value.field == "type"

    with pytest.raises(Forbidden) as plan:
        await alice.enqueue("orchestrate", "a1", {"pipeline": "t-approve"})
    assert plan.value.required_plan == "paid" and "paid plan" in plan.value.detail

    with pytest.raises(BadRequest) as bad:
        await alice.enqueue("t-count", "a1", priority=5000)
    assert bad.value.field == "priority" and bad.value.problem is not None

    with pytest.raises(NotFound):  # a channel that is not alice's
        await alice.enqueue("t-count", "b1")

    with pytest.raises(Unauthorized):
        await client_for(None).get(job)

    with pytest.raises(Conflict) as reused:  # an Idempotency-Key names one job
        await alice.enqueue("t-count", "a1", {"n": 1}, idempotency_key="k-1")
        await alice.enqueue("t-count", "a1", {"n": 2}, idempotency_key="k-1")
    assert reused.value.field == "Idempotency-Key"
    assert "409" in str(reused.value) and "Idempotency-Key" in str(reused.value)


async def test_enqueue_list_recent_retry_delete_clear(client_for: Callable[..., Pg], spawn_worker: Any) -> None:
    await spawn_worker("t-count", "t-second-try", extra=CLIENT_TYPES).started()
    pg = client_for("alice")
    first = await pg.enqueue("t-count", "a1", {"n": 0}, idempotency_key="same")
    assert (await pg.enqueue("t-count", "a1", {"n": 0}, idempotency_key="same")).id == first.id

    jobs = await pg.enqueue_many(
        [NewJobBody(type="t-count", channel_id="a1", payload={"n": i}) for i in range(1, 8)], key_prefix="batch-1"
    )
    assert [j.payload["n"] for j in jobs] == list(range(1, 8))
    again = await pg.enqueue_many(
        [NewJobBody(type="t-count", channel_id="a1", payload={"n": i}) for i in range(1, 8)], key_prefix="batch-1"
    )
    assert [j.id for j in again] == [j.id for j in jobs]  # the same call made twice: no job twice
    for job in jobs:
        await pg.wait(job, timeout=30)

    listed = [j async for j in pg.list(channel_id="a1", page_size=3)]  # three pages and a bit
    assert sorted(j.id for j in listed) == sorted(j.id for j in [first, *jobs])
    order = [(j.created_at, j.id) for j in listed]
    assert order == sorted(order, reverse=True)  # newest first, across the pages
    assert len([j async for j in pg.list(channel_id="a1", type="t-count", state="succeeded")]) == 8

    recent = await pg.recent("a1")
    assert len(recent) == 6 and {j.state for j in recent} == {"completed"}

    with pytest.raises(EnqueueManyFailed) as partly:
        await pg.enqueue_many(
            [
                NewJobBody(type="t-count", channel_id="a1"),
                NewJobBody(type="no-such-type", channel_id="a1"),
                NewJobBody(type="t-count", channel_id="a2"),
            ]
        )
    assert sorted(partly.value.created) == [0, 2]
    assert isinstance(partly.value.errors[1], Unprocessable)

    failing = await pg.enqueue("t-second-try", "a2", max_attempts=1)
    with pytest.raises(JobFailed):
        await pg.wait(failing, timeout=30)
    # The answer is the job as read after the retry: a worker listening for new work can
    # have claimed it, or even finished it, before that read.
    assert (await pg.retry(failing)).state in ("queued", "running", "completed")
    assert (await pg.wait(failing, timeout=30)).state == "completed"

    await pg.delete(first)
    with pytest.raises(NotFound):
        await pg.get(first)
    with pytest.raises(NotFound):
        await pg.delete(first)

    for job in partly.value.created.values():
        await pg.wait(job, timeout=30)
    cleared = await pg.clear("a1")
    assert cleared == 8  # seven of the batch and one of the partly made batch
    assert [j async for j in pg.list(channel_id="a1")] == []
    stats = await pg.stats()
    assert stats.oldest_queued_seconds is None


async def test_artifacts_whole_ranged_and_to_a_file(
    client_for: Callable[..., Pg], spawn_worker: Any, settings: Settings, tmp_path: Path
) -> None:
    await spawn_worker("t-artifact", extra=CLIENT_TYPES, env={"PGCUE_ARTIFACTS_DIR": settings.artifacts_dir}).started()
    pg = client_for("alice")
    size = 300_000
    job = await pg.wait(await pg.enqueue("t-artifact", "a1", {"size": size}), timeout=30)
    assert job.result_path == f"{job.id}/data.bin"
    expected = pattern(size)

    assert await pg.artifact(job) == expected
    assert await pg.artifact(job, name="data.bin", byte_range=(100, 199)) == expected[100:200]
    assert await pg.artifact(job, byte_range=(250_000, None)) == expected[250_000:]
    target = tmp_path / "out" / "copy.bin"
    target.parent.mkdir()
    assert await pg.artifact(job, target) == size
    assert target.read_bytes() == expected
    assert [p.name for p in target.parent.iterdir()] == ["copy.bin"]  # no temporary file left

    with pytest.raises(RangeNotSatisfiable):
        await pg.artifact(job, byte_range=(size + 10, None))
    with pytest.raises(NotFound):
        await pg.artifact(job, name="other.bin")
    with pytest.raises(NotFound):
        await client_for("bob").artifact(job)
