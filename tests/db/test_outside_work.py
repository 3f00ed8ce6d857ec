"""Jobs whose work runs elsewhere (a provider's prediction), at the façade: snooze parks a
running job without charging its attempt and records its handler state; the claim of a
snoozed job hands that state back, keeps started_at and writes no second `running`
event; a cancel of a snoozed job with outside work wakes it instead of ending it; a
person's retry forgets the state; a type's channel_concurrency counts outside work in
flight, parked or running, and two jobs cannot both take the last place."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from pgcue.core.models import Failure, JobType, NewJob, Snooze
from pgcue.core.queue import Queue
from pgcue.core.states import WaitingFor
from tests.conftest import Watcher

W = "test-worker"
T = "t-outside"


async def setup_type(queue: Queue, channel_limit: int | None = None) -> None:
    await queue.register_types([JobType(name=T, channel_concurrency=channel_limit)])


async def statuses(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[tuple[str, str | None]]:
    rows = await pool.fetch(
        "SELECT data FROM pgcue.job_events WHERE job_id = $1 AND kind = 'job:status' ORDER BY id", job_id
    )
    return [(r["data"]["state"], r["data"].get("waitingFor")) for r in rows]


async def test_a_snoozed_job_waits_in_the_queue_and_resumes_with_its_state(queue: Queue, pool: asyncpg.Pool) -> None:
    await setup_type(queue)
    j = await queue.enqueue(NewJob(type=T, channel_id="c"))
    (c,) = await queue.claim(T, 1, W, 30)
    assert c.handler_state is None
    assert await queue.record_outside_work(c.id, c.fence, T, "c", {"key": "k1"}) is True
    assert (
        await queue.snooze(c.id, c.fence, 0.0, WaitingFor.PROVIDER, {"key": "k1", "prediction": "p1"}) == Snooze.SNOOZED
    )

    parked = await queue.get(j.id)
    assert parked.state == "queued" and parked.attempts == 0 and parked.waiting_for == "provider"
    assert parked.locked_by is None and parked.to_wire().waiting_for == "provider"
    (again,) = await queue.claim(T, 1, W, 30)
    assert again.handler_state == {"key": "k1", "prediction": "p1"}
    assert again.attempts == 1 and again.fence == c.fence + 1
    assert again.started_at == c.started_at  # the attempt goes on across polls
    assert again.claimed_at is not None and again.claimed_at > c.started_at
    # The old claim's writes change nothing.
    assert await queue.snooze(c.id, c.fence, 0.0, WaitingFor.PROVIDER, None) == Snooze.LOST
    assert await queue.record_outside_work(c.id, c.fence, T, "c", None) is None
    # Polling again (state unchanged) is quiet: one `queued` event when it began to wait.
    assert await queue.snooze(again.id, again.fence, 30.0, WaitingFor.PROVIDER) == Snooze.SNOOZED
    assert (await queue.get(j.id)).handler_state == {"key": "k1", "prediction": "p1"}
    assert await statuses(pool, j.id) == [("queued", None), ("running", None), ("queued", "provider")]
    assert await queue.claim(T, 1, W, 30) == []  # not before its next poll


async def test_cancelling_a_snoozed_job_with_outside_work_wakes_it(
    queue: Queue, pool: asyncpg.Pool, watcher: Watcher
) -> None:
    await setup_type(queue)
    with_work, without = await queue.enqueue_many([NewJob(type=T, channel_id="c"), NewJob(type=T, channel_id="c")])
    for _ in range(2):
        (c,) = await queue.claim(T, 1, W, 30)
        if c.id == with_work:
            await queue.record_outside_work(c.id, c.fence, T, "c", {"prediction": "p1"})
        await queue.snooze(c.id, c.fence, 3600.0, WaitingFor.PROVIDER)

    # Nothing at the provider: cancelled at once, as any queued job.
    assert (await queue.cancel(without)).state == "cancelled"
    # A prediction in flight: asked, woken now, for a worker to cancel it at the provider.
    asked = await queue.cancel(with_work)
    assert asked.state == "queued" and asked.cancel_requested and asked.completed_at is None
    await watcher.until("SELECT true")
    assert ("pgcue_wake", T) in watcher.notifications
    (c,) = await queue.claim(T, 1, W, 30)
    assert c.id == with_work and c.cancel_requested and c.handler_state == {"prediction": "p1"}
    # It cannot be parked again; the worker ends it (a cancelled failure, as at a checkpoint).
    assert await queue.snooze(c.id, c.fence, 1.0, WaitingFor.PROVIDER) == Snooze.CANCEL
    assert await queue.fail([Failure(c.id, c.fence, "Job cancelled by user request", "cancelled")]) == {
        c.id: "cancelled"
    }


async def test_a_retry_forgets_the_outside_work(queue: Queue) -> None:
    await setup_type(queue)
    j = await queue.enqueue(NewJob(type=T, channel_id="c", max_attempts=1))
    (c,) = await queue.claim(T, 1, W, 30)
    await queue.record_outside_work(c.id, c.fence, T, "c", {"key": "k1"})
    await queue.snooze(c.id, c.fence, 0.0, WaitingFor.PROVIDER, {"key": "k1", "prediction": "p1"})
    (c,) = await queue.claim(T, 1, W, 30)
    await queue.fail([Failure(c.id, c.fence, "the provider failed it", "permanent")])
    retried = await queue.retry(j.id)
    assert retried.state == "queued" and retried.handler_state is None and retried.waiting_for is None
    (c,) = await queue.claim(T, 1, W, 30)
    assert c.handler_state is None


async def test_the_channel_limit_counts_outside_work_in_flight(queue: Queue) -> None:
    await setup_type(queue, channel_limit=1)
    a1, a2, b1 = await queue.enqueue_many(
        [NewJob(type=T, channel_id="a"), NewJob(type=T, channel_id="a"), NewJob(type=T, channel_id="b")]
    )
    claimed = {c.id: c for c in await queue.claim(T, 10, W, 30, limited=True)}
    assert set(claimed) == {a1, b1}  # the claim's own limit: one running per channel
    first, other = claimed[a1], claimed[b1]
    assert await queue.record_outside_work(first.id, first.fence, T, "a", {"key": "a1"}) is True
    assert await queue.record_outside_work(other.id, other.fence, T, "b", {"key": "b1"}) is True
    await queue.snooze(first.id, first.fence, 3600.0, WaitingFor.PROVIDER)  # parked, still in flight

    (second,) = await queue.claim(T, 10, W, 30, limited=True)
    assert second.id == a2
    assert await queue.record_outside_work(second.id, second.fence, T, "a", {"key": "a2"}) is False
    assert (await queue.get(a2)).handler_state is None
    # A job that holds its place may change its state; clearing needs no place.
    assert await queue.record_outside_work(other.id, other.fence, T, "b", {"key": "b1", "prediction": "p"}) is True
    assert await queue.record_outside_work(second.id, second.fence, T, "a", None) is True

    # When the first ends, the place is free.
    await queue.cancel(a1)
    (c,) = await queue.claim(T, 10, W, 30)  # the woken first, to stop its work
    assert c.id == a1
    await queue.fail([Failure(c.id, c.fence, "cancelled", "cancelled")])
    assert await queue.record_outside_work(second.id, second.fence, T, "a", {"key": "a2"}) is True


async def test_two_jobs_cannot_both_take_the_last_place(queue: Queue) -> None:
    await setup_type(queue, channel_limit=1)
    await queue.enqueue_many([NewJob(type=T, channel_id="a") for _ in range(8)])
    held = list(await queue.claim(T, 8, W, 30))
    assert len(held) == 8
    results = await asyncio.gather(
        *(queue.record_outside_work(c.id, c.fence, T, "a", {"key": str(c.id)}) for c in held)
    )
    assert sorted(results) == [False] * 7 + [True]
