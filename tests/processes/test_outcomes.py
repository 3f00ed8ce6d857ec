"""What a worker does when its own writes go wrong: outcomes the database cannot store,
mixed into batches with good ones; a maintenance duty that keeps failing; a database blip
while a chatty job reports and ends. Real worker processes, real PostgreSQL, real faults."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pgcue.core import db
from pgcue.core.config import Settings
from pgcue.core.models import Completion, NewJob
from pgcue.core.queue import Queue
from tests.conftest import Watcher, WorkerProcess

pytestmark = pytest.mark.timeout(120)

# What each bad outcome of t-outcomes (tests/helpers/jobtypes.py) must fail its job with.
BAD_OUTCOMES = {
    "nul-path": "resultPath must be text",  # the runtime's own check
    "deep": "result is nested too deeply",  # the runtime's own check
    "surrogate-path": "resultPath must be text",  # the runtime's own check (invalid Unicode)
    "refused-json": "the result could not be stored",  # refused by PostgreSQL, in the batch
}


def _logged(worker: WorkerProcess, event: str) -> list[dict[str, Any]]:
    return [line for line in list(worker.lines) if line.get("event") == event]


def _at(line: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(line["timestamp"])


async def test_outcomes_the_database_refuses_fail_their_own_jobs_and_the_rest_of_the_batch_completes(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher
) -> None:
    worker = await spawn_worker("t-outcomes").started()  # one worker, 50 at once
    run, size, groups = uuid.uuid4().hex[:8], 40, 5
    jobs = []
    for g in range(groups):
        kinds = ["ok"] * size
        if g > 0:  # group 0 is the control: nothing bad in its batch
            for k, kind in enumerate(BAD_OUTCOMES):
                kinds[3 + 10 * k] = kind
        # A group finishes together (its jobs wait for each other in the handler), so its
        # outcomes reach the completer in one loop turn: one batch, the bad ones among the
        # good. Priorities make the worker claim group by group.
        jobs += [
            NewJob(
                type="t-outcomes",
                channel_id="ch",
                priority=-g,
                payload={"group": f"{run}-{g}", "size": size, "n": g * size + i, "kind": kind},
            )
            for i, kind in enumerate(kinds)
        ]
    ids = await queue.enqueue_many(jobs)
    await watcher.states(ids, timeout=90)  # no job stays running

    rows = {
        r["id"]: r
        for r in await pool.fetch(
            """SELECT id, state, result, result_path, error_message, completed_at, payload
               FROM pgcue.jobs WHERE id = ANY($1::uuid[])""",
            ids,
        )
    }
    for job_id in ids:
        row = rows[job_id]
        kind = row["payload"]["kind"]
        if kind == "ok":
            assert row["state"] == "completed", dict(row)
            assert row["result"] == {"n": row["payload"]["n"]} and row["result_path"] == f"{job_id}/ok.txt"
        else:
            assert row["state"] == "failed", dict(row)
            assert BAD_OUTCOMES[kind] in (row["error_message"] or ""), (kind, row["error_message"])
            assert row["result"] is None and row["result_path"] is None
    # The batches really mixed them: the control group's outcomes were one statement (one
    # completed_at), a poisoned group's good ones were recorded one by one after the
    # database refused their batch.
    by_group: dict[str, set[datetime]] = {}
    for row in rows.values():
        if row["payload"]["kind"] == "ok":
            by_group.setdefault(row["payload"]["group"], set()).add(row["completed_at"])
    assert len(by_group[f"{run}-0"]) == 1, by_group[f"{run}-0"]
    for g in range(1, groups):
        assert len(by_group[f"{run}-{g}"]) > 1
    assert worker.proc.poll() is None
    assert not _logged(worker, "component failed; restarting")
    assert not _logged(worker, "outcome not recorded: the job is no longer held by this worker")


async def test_a_maintenance_duty_that_keeps_failing_stops_its_process_and_another_takes_over(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher, tmp_path: Path
) -> None:
    # The fault is real, not injected: pgcue has no test hook for it, so the first
    # leader's artifacts directory is a file (a volume that failed to mount, a typo in
    # PGCUE_ARTIFACTS_DIR). Removing a deleted job's folder under it fails with
    # NotADirectoryError every time the artifact sweeper tries, a failure no restart
    # cures. The other worker's directory is a directory, as it should be.
    broken = tmp_path / "artifacts-of-the-first-leader"
    broken.write_text("this should have been a directory\n")
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()

    # A deleted job whose artifact folder waits for the leader to remove it.
    (gone,) = await queue.enqueue_many([NewJob(type="t-slow", channel_id="ch")])
    (held,) = await queue.claim("t-slow", 1, "test", 60)
    await queue.artifacts.folder_started(gone, held.fence)
    assert await queue.complete([Completion(gone, held.fence, None, f"{gone}/out.txt")]) == {gone: "completed"}
    await queue.delete(gone)
    (artifacts / str(gone)).mkdir()
    (artifacts / str(gone) / "out.txt").write_text("bytes")
    assert await pool.fetchval("SELECT count(*) FROM pgcue.artifact_deletions WHERE job_id = $1", gone) == 1

    sweep = {"PGCUE_ARTIFACT_SWEEP_INTERVAL": "0.2"}
    first = await spawn_worker("t-count", env={**sweep, "PGCUE_ARTIFACTS_DIR": str(broken)}).started()
    await asyncio.to_thread(first.wait_log, "leading maintenance", 20)
    second = await spawn_worker("t-count", env={**sweep, "PGCUE_ARTIFACTS_DIR": str(artifacts)}).started()

    # 1 + 5 restarts within the window, then the process stops with EX_SOFTWARE.
    assert await first.wait_exit(60) == 70
    stopped = await asyncio.to_thread(first.wait_log, "worker stopped", 10)  # its last line, read
    assert stopped["exit_code"] == 70
    failures = [f for f in _logged(first, "component failed; restarting") if f["component"] == "artifact-sweeper"]
    assert len(failures) == 6, failures
    for failure in failures:
        assert failure["error"].startswith("NotADirectoryError")
        assert "Traceback (most recent call last)" in failure["exception"]
        assert "NotADirectoryError" in failure["exception"]
    (fatal,) = _logged(first, "component keeps failing; stopping the process")
    assert fatal["component"] == "artifact-sweeper"
    assert not _logged(first, "removed artifacts of deleted jobs")  # nothing was forgotten

    # The second worker leads now: a job whose lease expires after the first process
    # exited is rescued, and the deletion the first could not do is done.
    (lost,) = await queue.enqueue_many([NewJob(type="t-slow", channel_id="ch")])
    (claim,) = await queue.claim("t-slow", 1, "a-worker-that-vanished", 1.0)
    await watcher.until(
        """SELECT state = 'queued' AND locked_by IS NULL AND errors @> '[{"kind": "rescued"}]'
           FROM pgcue.jobs WHERE id = $1""",
        lost,
        timeout=30,
    )
    assert (await queue.get(lost)).attempts == claim.attempts == 1
    # (The log lines are read from the process's stderr by a thread: wait for them.)
    leading = await asyncio.to_thread(second.wait_log, "leading maintenance", 10)
    assert _at(leading) > _at(fatal)  # it led only once the first had given up
    await asyncio.to_thread(second.wait_log, "rescued jobs whose lease expired", 10)
    await watcher.until("SELECT count(*) = 0 FROM pgcue.artifact_deletions", timeout=30)
    assert not (artifacts / str(gone)).exists()
    assert second.proc.poll() is None and not _logged(second, "component failed; restarting")


async def test_a_database_blip_loses_no_buffered_output(
    queue: Queue, pool: asyncpg.Pool, spawn_worker: Any, watcher: Watcher, settings: Settings, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    worker = await spawn_worker("t-exact-output", extra=["--no-maintenance"]).started()
    (job_id,) = await queue.enqueue_many([NewJob(type="t-exact-output", channel_id="ch", payload={"gate": str(gate)})])
    dbname = settings.database_url.rsplit("/", 1)[1]
    newest_output = "SELECT max(id) FROM pgcue.job_events WHERE job_id = $1 AND kind = 'job:output'"

    # Mid-run: every connection of the worker is terminated, three times; output goes on.
    for blip in range(3):
        last = await watcher.until(newest_output, job_id, timeout=30)
        killed = await pool.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE datname = $1 AND application_name LIKE 'pgcue-worker%'""",
            dbname,
        )
        # The first time its pool and its LISTEN connection at least; later, whatever has
        # reconnected since (the listener comes back after a backoff).
        assert killed >= (2 if blip == 0 else 1)
        await watcher.until(f"SELECT ({newest_output}) > $2", job_id, last, timeout=30)

    # At the end: the job's last reports fail. A session holds the job's row (as a psql
    # user's SELECT … FOR UPDATE would), so each report waits on it and is caught in
    # flight; each is terminated. Then the row is let go.
    blocked_report = """
        SELECT pid FROM pg_stat_activity
        WHERE datname = $1 AND application_name = 'pgcue-worker' AND wait_event_type = 'Lock'
          AND query LIKE '-- report_progress%' AND pid <> ALL($2::int[])"""
    locker = await db.connect(settings)
    terminated: list[int] = []
    try:
        async with locker.transaction():
            await locker.execute("SELECT 1 FROM pgcue.jobs WHERE id = $1 FOR UPDATE", job_id)
            terminated.append(await watcher.until(blocked_report, dbname, terminated, timeout=30))
            await pool.execute("SELECT pg_terminate_backend($1)", terminated[-1])
            gate.touch()  # the handler writes its last line and returns
            await asyncio.to_thread(worker.wait_log, "exact output written", 20)
            for _ in range(3):
                terminated.append(await watcher.until(blocked_report, dbname, terminated, timeout=30))
                await pool.execute("SELECT pg_terminate_backend($1)", terminated[-1])
    finally:
        await locker.close()
    await watcher.states([job_id], {"completed"}, timeout=30)

    tokens = (await queue.get(job_id)).result["tokens"]
    expected = "".join(f"{i} " for i in range(tokens)) + f"end {tokens}\n"
    rows = await pool.fetch(
        "SELECT data->>'text' AS text FROM pgcue.job_events WHERE job_id = $1 AND kind = 'job:output' ORDER BY id",
        job_id,
    )
    written = "".join(r["text"] for r in rows)
    assert written == expected, (len(written), len(expected), written[-200:])
    await asyncio.to_thread(worker.wait_log, "progress report failed; will retry", 10)  # the blips were real
