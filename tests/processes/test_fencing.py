"""A zombie after a retry: a worker frozen past its lease, whose job was rescued, retried
by a person and claimed again, resumes and must change nothing.

`attempts` is reset by a retry, so the new claim's attempt 1 is the zombie's attempt 1
again; only the fence (a claim counter no retry resets, migration 0007) tells them apart.
Every write a worker makes about a job names the fence it claimed.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pgcue.core.errors import QuotaExceeded
from pgcue.core.models import Completion, Failure, NewJob, ProgressReport
from pgcue.core.queue import Queue
from tests.conftest import Watcher, WorkerProcess, read_trace

pytestmark = pytest.mark.timeout(120)


async def _row(pool: asyncpg.Pool, job_id: uuid.UUID) -> dict[str, Any]:
    """Every column of the job, as PostgreSQL has it."""
    text = await pool.fetchval("SELECT to_jsonb(j)::text FROM pgcue.jobs j WHERE id = $1", job_id)
    assert text is not None
    row: dict[str, Any] = json.loads(text)
    return row


async def _events_after(pool: asyncpg.Pool, job_id: uuid.UUID, after: int) -> list[tuple[str, dict[str, Any]]]:
    rows = await pool.fetch(
        "SELECT kind, data::text AS data FROM pgcue.job_events WHERE job_id = $1 AND id > $2 ORDER BY id",
        job_id,
        after,
    )
    return [(r["kind"], json.loads(r["data"])) for r in rows]


def _stopped_stats(worker: WorkerProcess) -> dict[str, Any]:
    line = worker.wait_log("worker stopped", timeout=10)  # its last line; the process has exited
    return {k: line[k] for k in ("claimed", "completed", "failed", "released")}


@pytest.mark.parametrize("zombie_resumes", ["while-the-new-attempt-runs", "after-the-new-attempt-completed"])
async def test_a_worker_frozen_past_its_lease_changes_nothing_after_the_job_is_retried(
    zombie_resumes: str,
    queue: Queue,
    pool: asyncpg.Pool,
    spawn_worker: Any,
    watcher: Watcher,
    trace_dir: Path,
    tmp_path: Path,
) -> None:
    # The zombie resuming while the new attempt 1 runs is the case a fence by attempt
    # lets through (the row is `running` under attempts = 1 again); resuming after the
    # new attempt completed is refused even by the state, and is checked too.
    gates = tmp_path / "gates"
    gates.mkdir()
    # The maintenance leader is neither frozen worker: a worker of another type.
    leader = await spawn_worker("t-count").started()
    await asyncio.to_thread(leader.wait_log, "leading maintenance", 20)
    zombie = await spawn_worker("t-gated", extra=["--no-maintenance"]).started()

    (job_id,) = await queue.enqueue_many([NewJob(type="t-gated", channel_id="ch", payload={"gates": str(gates)})])
    # Attempt 1 waits at its gate, its first report written.
    await watcher.until(
        "SELECT count(*) > 0 FROM pgcue.job_events WHERE job_id = $1 AND kind = 'job:output'", job_id, timeout=30
    )
    first = await _row(pool, job_id)
    assert first["state"] == "running" and first["attempts"] == 1
    old_fence = first["fence"]

    zombie.signal(signal.SIGSTOP)
    try:
        # Past its 2 s lease the leader rescues it: its one attempt is spent, so it fails.
        await watcher.states([job_id], {"failed"}, timeout=30)
        rescued = await queue.get(job_id)
        assert rescued.error_message is not None and "lease expired" in rescued.error_message

        retried = await queue.retry(job_id)  # a person's retry: fresh attempts, same fence
        assert retried.state == "queued" and retried.attempts == 0
        assert (await _row(pool, job_id))["fence"] == old_fence
        retry_event = await pool.fetchval("SELECT max(id) FROM pgcue.job_events WHERE job_id = $1", job_id)

        second = await spawn_worker("t-gated", extra=["--no-maintenance"]).started()
        await watcher.until(
            "SELECT count(*) > 0 FROM pgcue.job_events WHERE job_id = $1 AND id > $2 AND kind = 'job:output'",
            job_id,
            retry_event,
            timeout=30,
        )
        claimed = await _row(pool, job_id)
        new_fence = claimed["fence"]
        # The same attempt number as the zombie's; only the fence differs.
        assert claimed["state"] == "running" and claimed["attempts"] == first["attempts"] == 1
        assert new_fence > old_fence

        if zombie_resumes == "after-the-new-attempt-completed":
            (gates / str(new_fence)).touch()
            await watcher.states([job_id], {"completed"}, timeout=30)
        # The zombie's handler will go on as if nothing happened: finish, report, complete.
        (gates / str(old_fence)).touch()
    finally:
        zombie.signal(signal.SIGCONT)

    # The zombie ran its handler to the end and tried to write: its heartbeat, its report
    # and (unless the refusals told it first) its completion were all refused.
    await asyncio.to_thread(zombie.wait_log, "lease lost: another worker may run this job now", 30)
    zombie.signal(signal.SIGTERM)  # it lets its running job finish first
    assert await zombie.wait_exit(30) == 0
    ends = {(pid, attempt) for pid, event, jid, attempt in read_trace(trace_dir) if event == "end"}
    assert (zombie.proc.pid, 1) in ends  # its handler did run to the end
    assert _stopped_stats(zombie) == {"claimed": 1, "completed": 0, "failed": 0, "released": 0}

    if zombie_resumes == "while-the-new-attempt-runs":
        held = await _row(pool, job_id)
        assert held["state"] == "running" and held["fence"] == new_fence and held["progress"] == 10
        (gates / str(new_fence)).touch()
        await watcher.states([job_id], {"completed"}, timeout=30)

    # The truth is the second worker's, written once.
    final = await _row(pool, job_id)
    assert final["state"] == "completed" and final["attempts"] == 1 and final["fence"] == new_fence
    assert final["result"] == {"fence": new_fence, "pid": second.proc.pid}
    assert final["progress"] == 100 and final["error_message"] is None and final["locked_by"] is None
    events = await _events_after(pool, job_id, retry_event)
    statuses = [(data["state"], data.get("attempt")) for kind, data in events if kind == "job:status"]
    assert statuses == [("running", 1), ("completed", 1)]
    new_tag, old_tag = f"fence {new_fence} pid {second.proc.pid}", f"fence {old_fence} "
    reports = [str(data.get("text") or data.get("message")) for kind, data in events if kind != "job:status"]
    assert reports and all(new_tag in r for r in reports), reports
    assert not any(old_tag in r for r in reports), reports  # nothing of the zombie's after the retry
    text = "".join(data["text"] for kind, data in events if kind == "job:output")
    assert text == f"{new_tag}: started\n{new_tag}: finishing\n"
    # The second worker held the job from its claim to its completion.
    second.signal(signal.SIGTERM)
    assert await second.wait_exit(30) == 0
    assert _stopped_stats(second) == {"claimed": 1, "completed": 1, "failed": 0, "released": 0}


async def test_a_fence_from_before_a_retry_is_refused_though_the_attempt_matches(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    (job_id,) = await queue.enqueue_many([NewJob(type="t-gated", channel_id="ch", payload={})])
    (old,) = await queue.claim("t-gated", 1, "w-old", 60)
    # Its lease ran out (as if its worker had stopped heartbeating), and the rescue spends
    # its only attempt.
    await pool.execute("UPDATE pgcue.jobs SET lease_expires_at = now() - interval '1 s' WHERE id = $1", job_id)
    assert [(r.id, r.state) for r in await queue.upkeep.rescue()] == [(job_id, "failed")]
    await queue.retry(job_id)
    (new,) = await queue.claim("t-gated", 1, "w-new", 60)
    assert new.attempts == old.attempts == 1 and new.fence > old.fence

    before = await _row(pool, job_id)
    events_before = await pool.fetchval("SELECT count(*) FROM pgcue.job_events WHERE job_id = $1", job_id)
    output = (("job:output", b'{"text": "zombie"}'),)
    assert await queue.heartbeat("w-old", [(job_id, old.fence, 600)]) == {}
    assert await queue.report_progress([ProgressReport(job_id, old.fence, 77, "zombie", "zombie", output)]) == set()
    assert await queue.complete([Completion(job_id, old.fence, {"by": "zombie"}, "zombie/out.txt")]) == {}
    assert await queue.fail([Failure(job_id, old.fence, "zombie error", "permanent")]) == {}
    assert await queue.fail([Failure(job_id, old.fence, "zombie error", "error", 0.0)]) == {}
    assert await queue.release([(job_id, old.fence)]) == {}
    await queue.artifacts.folder_started(job_id, old.fence)
    with pytest.raises(QuotaExceeded, match="no longer held"):
        await queue.artifacts.reserve(job_id, old.fence, 1000, 0)
    assert await _row(pool, job_id) == before  # not one column changed
    assert await pool.fetchval("SELECT count(*) FROM pgcue.job_events WHERE job_id = $1", job_id) == events_before

    # The new claim's fence is the one that writes.
    assert await queue.heartbeat("w-new", [(job_id, new.fence, 60)]) == {job_id: False}
    assert await queue.report_progress([ProgressReport(job_id, new.fence, 50, "new")]) == {job_id}
    assert await queue.complete([Completion(job_id, new.fence, {"by": "new"})]) == {job_id: "completed"}
    done = await queue.get(job_id)
    assert done.state == "completed" and done.result == {"by": "new"} and done.progress == 100
