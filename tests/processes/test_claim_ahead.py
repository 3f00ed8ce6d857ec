"""Claiming ahead (PGCUE_CLAIM_AHEAD_SECONDS): a worker whose handlers finish fast claims
more jobs than it has free slots, so claims come in batches instead of a free slot's
worth. What must hold anyway, in real worker processes:

- no more handlers run at once than the type's concurrency;
- a type whose jobs turn out slow does not stay hoarded by one process: what it claimed
  ahead and could not start in time goes back, attempt uncharged, for another to run;
- on SIGTERM, what was claimed ahead and never started goes back at once.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pgcue.core.models import NewJob
from pgcue.core.queue import Queue
from tests.conftest import Watcher, read_trace

CONCURRENCY = 2  # t-ahead's


def jobs(n: int, **payload: Any) -> list[NewJob]:
    return [NewJob(type="t-ahead", channel_id="ch", payload={"n": i, **payload}) for i in range(n)]


def handler_runs(trace_dir: Path) -> list[tuple[int, int, str]]:
    """(pid, handlers at once in that process, job id) for every handler that started."""
    return [
        (pid, int(event.split("-")[1]), job_id)
        for pid, event, job_id, _ in read_trace(trace_dir)
        if event.startswith("atonce-")
    ]


async def warm(queue: Queue, watcher: Watcher) -> None:
    """One quick job, so the worker knows how fast the type's handlers are."""
    await watcher.states(await queue.enqueue_many(jobs(1)), {"completed"}, timeout=30)


async def largest_claim(pool: asyncpg.Pool) -> int:
    # Jobs claimed by one statement share its transaction's now() as started_at.
    value = await pool.fetchval(
        "SELECT max(n) FROM (SELECT count(*) AS n FROM pgcue.jobs WHERE state = 'completed' GROUP BY started_at) c"
    )
    return int(value)


@pytest.mark.parametrize("horizon", ["0.05", "0"])
async def test_fast_jobs_are_claimed_ahead_yet_no_more_handlers_run_at_once_than_the_concurrency(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher, trace_dir: Path, horizon: str
) -> None:
    await spawn_worker("t-ahead", env={"PGCUE_CLAIM_AHEAD_SECONDS": horizon}).started()
    await warm(queue, watcher)
    ids = await queue.enqueue_many(jobs(400))
    await watcher.states(ids, {"completed"}, timeout=60)
    runs = handler_runs(trace_dir)
    assert Counter(job_id for _, _, job_id in runs).most_common(1)[0][1] == 1  # each handler ran once
    assert max(at_once for _, at_once, _ in runs) <= CONCURRENCY
    assert await pool.fetchval("SELECT max(attempts) FROM pgcue.jobs") == 1
    if horizon == "0":  # claiming ahead off: never more than the free slots in one claim
        assert await largest_claim(pool) <= CONCURRENCY
    else:
        assert await largest_claim(pool) > 10 * CONCURRENCY


async def test_slow_jobs_claimed_ahead_go_back_uncharged_and_another_process_runs_them(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher, trace_dir: Path, tmp_path: Path
) -> None:
    first = await spawn_worker("t-ahead").started()
    await warm(queue, watcher)  # its handlers look instant now: it will claim ahead
    gate = tmp_path / "gate"  # the slow jobs run until the test opens it
    slow = await queue.enqueue_many(jobs(8, gate=str(gate)))
    # The first process took all eight, though it can run two at a time.
    await watcher.until("SELECT count(*) = 8 FROM pgcue.jobs WHERE state = 'running'", timeout=20)
    holders = await pool.fetch("SELECT DISTINCT locked_by FROM pgcue.jobs WHERE state = 'running'")
    assert len(holders) == 1
    first_id = holders[0]["locked_by"]
    second = await spawn_worker("t-ahead").started()
    # Six could not start within the wait: they went back, and the second process took two.
    await watcher.until(
        """SELECT count(*) FILTER (WHERE locked_by = $1) = 2 AND count(*) FILTER (WHERE locked_by <> $1) = 2
           FROM pgcue.jobs WHERE state = 'running'""",
        first_id,
        timeout=30,
    )
    gate.touch()
    await watcher.states(slow, {"completed"}, timeout=60)

    runs = [r for r in handler_runs(trace_dir) if r[2] in {str(i) for i in slow}]
    assert sorted(job_id for _, _, job_id in runs) == sorted(str(i) for i in slow)  # each ran once
    assert max(at_once for _, at_once, _ in runs) <= CONCURRENCY
    assert {pid for pid, _, _ in runs} == {first.proc.pid, second.proc.pid}
    # Given back without charging the attempt, saying why.
    assert await pool.fetchval("SELECT max(attempts) FROM pgcue.jobs WHERE id = ANY($1)", slow) == 1
    reasons = await pool.fetch(
        "SELECT data->>'reason' AS r FROM pgcue.job_events WHERE job_id = ANY($1) AND data ? 'reason'", slow
    )
    assert Counter(r["r"] for r in reasons) == {"claimed ahead; no free slot in time": 6}


async def test_a_claim_in_flight_when_sigterm_comes_is_given_back_not_left_held(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher
) -> None:
    # SIGTERM the moment the claim has committed, while the worker may still be reading
    # its answer: nothing it took may stay `running` until its lease runs out.
    worker = await spawn_worker("t-ahead", env={"PGCUE_SHUTDOWN_GRACE": "0.5"}).started()
    held = await queue.enqueue_many(jobs(8, sleep=30))
    await watcher.until("SELECT count(*) > 0 FROM pgcue.jobs WHERE state = 'running'", timeout=20)
    worker.signal(signal.SIGTERM)
    assert await worker.wait_exit(timeout=15) == 0
    rows = await pool.fetch("SELECT state, attempts, locked_by FROM pgcue.jobs WHERE id = ANY($1)", held)
    assert {(r["state"], r["attempts"], r["locked_by"]) for r in rows} == {("queued", 0, None)}


async def test_sigterm_gives_back_jobs_claimed_ahead_without_running_them(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher, trace_dir: Path
) -> None:
    worker = await spawn_worker("t-ahead", env={"PGCUE_SHUTDOWN_GRACE": "0.5"}).started()
    await warm(queue, watcher)
    held = await queue.enqueue_many(jobs(8, sleep=30, report=True))
    await watcher.until("SELECT count(*) = 8 FROM pgcue.jobs WHERE state = 'running'", timeout=20)
    # Two handlers have started (and reported it); six jobs wait for a slot.
    await watcher.until(
        "SELECT count(DISTINCT job_id) = 2 FROM pgcue.job_events WHERE job_id = ANY($1) AND kind = 'job:progress'",
        held,
        timeout=20,
    )
    worker.signal(signal.SIGTERM)
    assert await worker.wait_exit(timeout=15) == 0
    rows = await pool.fetch("SELECT state, attempts, locked_by FROM pgcue.jobs WHERE id = ANY($1)", held)
    assert {(r["state"], r["attempts"], r["locked_by"]) for r in rows} == {("queued", 0, None)}
    started = {job_id for _, _, job_id in handler_runs(trace_dir)} & {str(i) for i in held}
    assert len(started) == CONCURRENCY  # the other six never ran a handler
