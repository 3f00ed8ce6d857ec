"""Group commit of single enqueues (service/batching.py) and the job-type rule that
replaced the foreign key (migration 0006), against a real PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from pgcue.core.batching import EnqueueBatcher
from pgcue.core.errors import UniqueConflict, UnknownJobType
from pgcue.core.models import NewJob
from pgcue.core.queue import Queue

pytestmark = pytest.mark.timeout(60)


def _job(n: int, **extra: object) -> NewJob:
    return NewJob(type="echo", channel_id="c1", payload={"n": n}, **extra)  # type: ignore[arg-type]


async def test_concurrent_enqueues_share_one_transaction(queue: Queue, pool: asyncpg.Pool) -> None:
    batcher = EnqueueBatcher(queue)
    jobs = await asyncio.gather(*(batcher.enqueue(_job(n)) for n in range(20)))
    # Each caller gets its own job back, as stored, in the state it was enqueued in.
    assert [j.payload for j in jobs] == [{"n": n} for n in range(20)]
    assert len({j.id for j in jobs}) == 20 and {j.state for j in jobs} == {"queued"}
    # ... and the twenty arrived together, so one transaction wrote them all.
    txs = await pool.fetchval("SELECT count(DISTINCT tx) FROM pgcue.job_events WHERE kind = 'job:status'")
    assert txs == 1


async def test_a_job_at_fault_fails_alone(queue: Queue, pool: asyncpg.Pool) -> None:
    held = await queue.enqueue(_job(0, unique_key="u1"))
    batcher = EnqueueBatcher(queue)
    results = await asyncio.gather(
        batcher.enqueue(_job(1)),
        batcher.enqueue(_job(2, unique_key="u1", on_conflict="reject")),
        batcher.enqueue(_job(3)),
        batcher.enqueue(NewJob(type="no-such-type", channel_id="c1", payload={})),
        return_exceptions=True,
    )
    assert isinstance(results[1], UniqueConflict) and results[1].existing == held.id
    assert isinstance(results[3], UnknownJobType)
    stored = {r.payload["n"] for r in results if not isinstance(r, BaseException)}
    assert stored == {1, 3}
    count = await pool.fetchval("SELECT count(*) FROM pgcue.jobs")
    assert count == 3  # u1's holder, 1 and 3: the failed batch left nothing behind


async def test_unknown_type_writes_nothing_and_types_in_use_cannot_go(queue: Queue, pool: asyncpg.Pool) -> None:
    with pytest.raises(UnknownJobType):
        await queue.enqueue_many([_job(1), NewJob(type="no-such-type", channel_id="c1", payload={})])
    assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs") == 0
    await queue.enqueue(_job(2))
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="still has jobs"):
        await pool.execute("DELETE FROM pgcue.job_types WHERE name = 'echo'")
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="still has jobs"):
        await pool.execute("UPDATE pgcue.job_types SET name = 'echo2' WHERE name = 'echo'")
    await pool.execute("DELETE FROM pgcue.jobs")
    await pool.execute("DELETE FROM pgcue.job_types WHERE name = 'echo'")  # unused now: allowed


async def test_a_job_arriving_as_the_last_flush_ends_is_not_stranded(queue: Queue) -> None:
    # The caller of the first job resumes before the flusher's task is reaped; its next
    # enqueue must start a flush of its own rather than count the finished one.
    batcher = EnqueueBatcher(queue, max_inflight=1)
    first = await batcher.enqueue(_job(1))
    async with asyncio.timeout(10):  # not wait_for: its extra task would let the reaping run first
        second = await batcher.enqueue(_job(2))
    assert first.id != second.id and second.payload == {"n": 2}
