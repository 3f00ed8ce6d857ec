"""The worker runtime in real processes: claims, crashes, retries, cancels, shutdown."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from pgcue.core.models import NewJob
from pgcue.core.queue import Queue
from tests.conftest import Watcher, read_trace


def jobs(type: str, n: int = 1, **payload: Any) -> list[NewJob]:
    return [NewJob(type=type, channel_id="ch", payload={"n": i, **payload}) for i in range(n)]


async def wait_running(watcher: Watcher, job_id: Any) -> None:
    """Until the handler has reported progress (it is past its first checkpoint)."""
    await watcher.until("SELECT count(*) > 0 FROM pgcue.job_events WHERE job_id = $1 AND kind = 'job:progress'", job_id)


async def test_three_processes_run_each_of_many_jobs_exactly_once(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher, trace_dir: Path
) -> None:
    workers = [spawn_worker("t-count") for _ in range(3)]
    await asyncio.gather(*(w.started() for w in workers))
    ids = await queue.enqueue_many(jobs("t-count", 3000))
    await watcher.states(ids, {"completed"}, timeout=60)
    trace = read_trace(trace_dir)
    starts = Counter(job_id for _, event, job_id, _ in trace if event == "start")
    assert set(starts) == {str(i) for i in ids}
    assert max(starts.values()) == 1  # never run twice, so never twice at once
    assert len({pid for pid, *_ in trace}) == 3  # every process took a share
    assert await pool.fetchval("SELECT max(attempts) FROM pgcue.jobs") == 1
    completed_events = await pool.fetchval("SELECT count(*) FROM pgcue.job_events WHERE data->>'state' = 'completed'")
    assert completed_events == 3000  # each completion recorded once


async def test_a_killed_workers_job_runs_again_after_its_lease_and_completes_once(
    queue: Queue, spawn_worker: Any, watcher: Watcher, trace_dir: Path
) -> None:
    first = await spawn_worker("t-slow", extra=["--no-maintenance"]).started()
    (job_id,) = await queue.enqueue_many(jobs("t-slow", steps=10, step=0.1))
    await wait_running(watcher, job_id)
    first.kill()
    await spawn_worker("t-slow").started()
    await watcher.states([job_id], {"completed"}, timeout=30)
    job = await queue.get(job_id)
    assert job.attempts == 2
    assert [e["kind"] for e in job.errors] == ["rescued"]
    ends = [t for t in read_trace(trace_dir) if t[1] == "end"]
    assert len(ends) == 1 and ends[0][3] == 2


async def test_retries_back_off_then_stop_at_max_attempts(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher
) -> None:
    await spawn_worker("t-flaky").started()
    never, second = await queue.enqueue_many(
        [NewJob(type="t-flaky", channel_id="ch"), NewJob(type="t-flaky", channel_id="ch", payload={"succeedOn": 2})]
    )
    await watcher.states([never, second], timeout=30)
    failed = await queue.get(never)
    assert failed.state == "failed" and failed.attempts == 3
    assert [e["attempt"] for e in failed.errors] == [1, 2, 3]
    assert failed.error_message == "RuntimeError: flaky failure on attempt 3"
    # The wait before each retry grows: base 0.2 s, doubling, jitter ±25 %.
    gaps = await pool.fetch(
        """SELECT extract(epoch FROM s.created_at - f.created_at) AS gap
           FROM pgcue.job_events s JOIN pgcue.job_events f ON f.job_id = s.job_id
            AND f.data->>'state' = 'queued' AND (f.data->>'attempt')::int = (s.data->>'attempt')::int - 1
            AND f.data ? 'retryAt'
           WHERE s.job_id = $1 AND s.data->>'state' = 'running' ORDER BY s.id""",
        never,
    )
    assert [round(g["gap"], 2) >= lo for g, lo in zip(gaps, (0.15, 0.3), strict=True)] == [True, True]
    ok = await queue.get(second)
    assert ok.state == "completed" and ok.attempts == 2 and ok.result == {"attempt": 2}
    assert ok.error_message is None and len(ok.errors) == 1


async def test_a_permanent_error_fails_at_once(queue: Queue, spawn_worker: Any, watcher: Watcher) -> None:
    await spawn_worker("t-permanent").started()
    (job_id,) = await queue.enqueue_many(jobs("t-permanent"))
    await watcher.states([job_id])
    job = await queue.get(job_id)
    assert (job.state, job.attempts, job.errors[0]["kind"]) == ("failed", 1, "permanent")


async def test_cancelling_a_running_job_stops_it_at_a_checkpoint(
    queue: Queue, spawn_worker: Any, watcher: Watcher, trace_dir: Path
) -> None:
    await spawn_worker("t-slow").started()
    (job_id,) = await queue.enqueue_many(jobs("t-slow", steps=600, step=0.05))  # 30 s if not stopped
    await wait_running(watcher, job_id)
    await queue.cancel(job_id)
    await watcher.states([job_id], {"cancelled"}, timeout=5)
    job = await queue.get(job_id)
    assert job.result is None and job.result_path is None and job.cancel_requested
    assert job.error_message == "Job cancelled by user request"
    assert not [t for t in read_trace(trace_dir) if t[1] == "end"]


async def test_sigterm_gives_back_unfinished_jobs_without_charging_an_attempt(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher, settings: Any
) -> None:
    worker = await spawn_worker("t-slow", env={"PGCUE_SHUTDOWN_GRACE": "0.5"}).started()
    (stuck,) = await queue.enqueue_many(jobs("t-slow", steps=600, step=0.05, ignoreCancel=True))
    await wait_running(watcher, stuck)
    worker.signal(signal.SIGTERM)
    assert await worker.wait_exit(timeout=15) == 0
    job = await queue.get(stuck)
    assert job.state == "queued" and job.attempts == 0 and job.locked_by is None
    reasons = await pool.fetch(
        "SELECT data->>'reason' AS r FROM pgcue.job_events WHERE job_id = $1 AND data ? 'reason'", stuck
    )
    assert [r["r"] for r in reasons] == ["worker shutdown"]


async def test_sigterm_lets_a_job_finish_within_the_grace_period(
    queue: Queue, spawn_worker: Any, watcher: Watcher
) -> None:
    worker = await spawn_worker("t-slow", env={"PGCUE_SHUTDOWN_GRACE": "20"}).started()
    (job_id,) = await queue.enqueue_many(jobs("t-slow", steps=10, step=0.1))
    await wait_running(watcher, job_id)
    worker.signal(signal.SIGTERM)
    assert await worker.wait_exit(timeout=20) == 0
    assert (await queue.get(job_id)).state == "completed"


async def test_stages_progress_and_output_stream_as_events_in_order(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher
) -> None:
    await spawn_worker("t-stages").started()
    (job_id,) = await queue.enqueue_many(jobs("t-stages"))
    await watcher.states([job_id], {"completed"})
    rows = await pool.fetch("SELECT kind, data FROM pgcue.job_events WHERE job_id = $1 ORDER BY id", job_id)
    seen = [(r["kind"], r["data"].get("state") or r["data"].get("stage")) for r in rows]
    stages = [s for k, s in seen if k == "stage:updated"]
    assert stages == ["draft", "review", "publish"]
    assert seen[0] == ("job:status", "queued") and seen[1] == ("job:status", "running")
    assert seen[-1] == ("job:status", "completed")
    output = "".join(r["data"]["text"] for r in rows if r["kind"] == "job:output")
    assert output == "draft done\nreview done\npublish done\n"
    job = await queue.get(job_id)
    assert job.stage == "publish" and job.progress == 100


async def test_a_worker_under_its_memory_budget_runs_jobs(queue: Queue, spawn_worker: Any, watcher: Watcher) -> None:
    await spawn_worker("echo", extra=["--memory-mb", "512"]).started()
    (job_id,) = await queue.enqueue_many(jobs("echo"))
    await watcher.states([job_id], {"completed"})


async def test_an_attempt_past_its_timeout_fails_and_is_retried(
    queue: Queue, spawn_worker: Any, watcher: Watcher
) -> None:
    await spawn_worker("t-timeout").started()
    (job_id,) = await queue.enqueue_many(jobs("t-timeout"))
    await watcher.states([job_id], {"failed"}, timeout=20)
    job = await queue.get(job_id)
    assert job.attempts == 2 and [e["kind"] for e in job.errors] == ["timeout", "timeout"]
    assert job.error_message == "timed out after 1s"


async def test_the_supervisor_restarts_a_crashed_worker(database: str, watcher: Watcher, queue: Queue) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = dict(os.environ, PGCUE_DATABASE_URL=database, PGCUE_LOG_FORMAT="json")
    sup = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pgcue.cli",
            "workers",
            "--import",
            "tests.helpers.jobtypes",
            "--type",
            "t-count",
            "--type",
            "t-flaky",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await watcher.until("SELECT count(*) = 2 FROM pgcue.workers WHERE stopped_at IS NULL")
        pid = await watcher.conn.fetchval("SELECT pid FROM pgcue.workers WHERE 't-count' = ANY(types)")
        os.kill(pid, signal.SIGKILL)
        await watcher.until("SELECT count(*) = 2 FROM pgcue.workers WHERE 't-count' = ANY(types)", timeout=20)
        (job_id,) = await queue.enqueue_many(jobs("t-count"))
        await watcher.states([job_id], {"completed"})
    finally:
        sup.terminate()
        assert sup.wait(30) == 0
    # Every child was told to stop, and stopped cleanly.
    assert (
        await watcher.conn.fetchval("SELECT count(*) FROM pgcue.workers WHERE stopped_at IS NULL AND pid <> $1", pid)
        == 0
    )
