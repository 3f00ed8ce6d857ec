"""Multi-stage pipelines with real worker processes: stages in order, review
feedback loops, a pause for a person resumed over the API, cancel at a stage boundary,
and an orchestrator killed mid-run."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pgcue.core.models import NewJob
from pgcue.core.queue import Queue
from pgcue.workers.runtime import registry
from tests.conftest import Watcher, read_trace
from tests.helpers.apiserver import Api

pytestmark = pytest.mark.timeout(60)

PIPELINE_TYPES = ["--import", "tests.helpers.pipelinetypes"]


@pytest.fixture(autouse=True)
async def stage_types(queue: Queue) -> None:
    """The stage types exist before the first run enqueues them (workers also register
    their own types when they start, but a run may start first)."""
    import tests.helpers.pipelinetypes  # noqa: F401  (registers the types and pipelines here too)

    await queue.register_types([registry.get(name).row() for name in ("p-work", "p-review")])


async def start_run(queue: Queue, pipeline: str, channel: str = "c", **inputs: Any) -> uuid.UUID:
    (run,) = await queue.enqueue_many(
        [NewJob(type="orchestrate", channel_id=channel, payload={"pipeline": pipeline, "inputs": inputs})]
    )
    return run


async def stage_events(pool: asyncpg.Pool, run: uuid.UUID) -> list[tuple[str, str, int]]:
    rows = await pool.fetch(
        "SELECT data FROM pgcue.job_events WHERE job_id = $1 AND kind = 'stage:updated' ORDER BY id", run
    )
    out = []
    for r in rows:
        data = json.loads(r["data"]) if isinstance(r["data"], str) else r["data"]
        out.append((data["stage"], data["state"], data["iteration"]))
    return out


async def stages(pool: asyncpg.Pool, run: uuid.UUID) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch("SELECT * FROM pgcue.pipeline_stages WHERE job_id = $1 ORDER BY position", run)
    return {r["name"]: r for r in rows}


def loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def test_three_stage_pipeline_completes_with_stage_events_in_order(
    queue: Queue, pool: asyncpg.Pool, watcher: Watcher, spawn_worker: Any
) -> None:
    await spawn_worker("orchestrate", "p-work", extra=PIPELINE_TYPES).started()
    run = await start_run(queue, "t-three", topic="tides")
    await watcher.states([run], {"completed"}, timeout=30)

    events = await stage_events(pool, run)
    assert events == [
        ("outline", "pending", 0),
        ("script", "pending", 0),
        ("polish", "pending", 0),
        ("outline", "running", 1),
        ("outline", "done", 1),
        ("script", "running", 1),
        ("script", "done", 1),
        ("polish", "running", 1),
        ("polish", "done", 1),
    ]
    job = await queue.get(run)
    assert job.attempts == 1 and job.stage == "polish" and job.waiting_for is None
    # Each stage's input came from the one before it; the run's result gathers them.
    result = job.result["stages"]
    assert result["outline"]["result"]["from"] == "tides"
    assert result["script"]["result"]["from"] == "outline draft 1"
    assert result["polish"]["result"]["from"] == "script draft 1"
    children = await pool.fetch("SELECT type, state, channel_id FROM pgcue.jobs WHERE parent_id = $1", run)
    assert len(children) == 3 and {(c["type"], c["state"], c["channel_id"]) for c in children} == {
        ("p-work", "completed", "c")
    }
    # The stored copy of the definition travels with the run.
    spec = loads((await stages(pool, run))["polish"]["spec"])
    assert spec["type"] == "p-work" and spec["reviewer"] == "check:not-empty"
    view = await pool.fetchrow("SELECT * FROM pgcue.pipeline_runs WHERE id = $1", run)
    assert view["pipeline"] == "t-three" and view["stages_done"] == 3 and view["current_stage"] is None


async def test_review_feedback_loops_then_passes_or_fails_the_run(
    queue: Queue, pool: asyncpg.Pool, watcher: Watcher, spawn_worker: Any
) -> None:
    await spawn_worker("orchestrate", "p-work", "p-review", extra=PIPELINE_TYPES).started()
    passes = await start_run(queue, "t-review")
    fails = await start_run(queue, "t-strict")
    await watcher.states([passes], {"completed"}, timeout=30)
    await watcher.states([fails], {"failed"}, timeout=30)

    draft = (await stages(pool, passes))["draft"]
    feedback = loads(draft["feedback"])
    assert draft["state"] == "done" and draft["iteration"] == 3
    assert [(f["iteration"], f["passed"]) for f in feedback] == [(1, False), (2, False), (3, True)]
    assert feedback[0]["by"] == "p-review" and "punchier" in feedback[0]["feedback"]
    states = [(s, i) for name, s, i in await stage_events(pool, passes)]
    assert states == [
        ("pending", 0),
        ("running", 1),
        ("in_review", 1),
        ("pending", 1),
        ("running", 2),
        ("in_review", 2),
        ("pending", 2),
        ("running", 3),
        ("in_review", 3),
        ("done", 3),
    ]
    # The third try saw both rounds of feedback.
    assert loads(draft["result"])["feedbackSeen"] == [
        "iteration 1: make it punchier",
        "iteration 2: make it punchier",
    ]
    kinds = await pool.fetch("SELECT type, count(*) AS n FROM pgcue.jobs WHERE parent_id = $1 GROUP BY type", passes)
    assert {r["type"]: r["n"] for r in kinds} == {"p-work": 3, "p-review": 3}

    failed = await queue.get(fails)
    assert failed.error_message is not None
    assert "stage draft failed review 2 time(s)" in failed.error_message
    assert "iteration 2: make it punchier" in failed.error_message
    assert (await stages(pool, fails))["draft"]["state"] == "failed"

    # Retry restarts the failed stage with fresh iterations (and fails it again here).
    await queue.retry(fails)
    await watcher.until("SELECT true FROM pgcue.jobs WHERE id = $1 AND state = 'failed' AND attempts = 1", fails)
    draft = (await stages(pool, fails))["draft"]
    assert draft["state"] == "failed" and draft["iteration"] == 2 and len(loads(draft["feedback"])) == 4
    assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs WHERE parent_id = $1 AND type = 'p-work'", fails) == 4


async def test_episode_pipeline_runs_offline_end_to_end(
    queue: Queue, pool: asyncpg.Pool, watcher: Watcher, spawn_worker: Any
) -> None:
    await spawn_worker("orchestrate", "idea", "fact-check", "humanize").started()
    run = await start_run(queue, "episode", topic="tides")
    await watcher.states([run], {"completed"}, timeout=30)
    job = await queue.get(run)
    assert set(job.result["stages"]) == {"idea", "fact-check", "humanize"}
    assert job.result_path is not None and job.result_path.endswith("humanize.md")


async def test_pause_waits_without_a_worker_until_resumed_over_the_api(
    api: Api, queue: Queue, pool: asyncpg.Pool, watcher: Watcher, spawn_worker: Any
) -> None:
    await spawn_worker("orchestrate", "p-work", extra=PIPELINE_TYPES).started()
    async with api.client("carol") as c:
        r = await c.post(
            "/api/jobs", json={"type": "orchestrate", "channelId": "c1", "payload": {"pipeline": "t-approve"}}
        )
        assert r.status_code == 201, r.text
        run = uuid.UUID(r.json()["job"]["id"])

        await watcher.until(
            "SELECT true FROM pgcue.jobs WHERE id = $1 AND state = 'queued' AND waiting_for = 'approval'", run
        )
        # Paused: nothing runs, not even the orchestrator, and it will not run on its own.
        assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs WHERE state = 'running'") == 0
        assert await pool.fetchval("SELECT run_at = 'infinity' FROM pgcue.jobs WHERE id = $1", run)
        view = await pool.fetchrow("SELECT * FROM pgcue.pipeline_runs WHERE id = $1", run)
        assert (view["waiting_for"], view["current_stage"], view["stage_state"]) == (
            "approval",
            "draft",
            "awaiting_approval",
        )
        assert (await c.get("/api/stats")).json()["pipelinesAwaitingApproval"] == 1
        body = (await c.get(f"/api/jobs/{run}/stages")).json()
        assert body["waitingFor"] == "approval"
        assert [(s["name"], s["state"]) for s in body["stages"]] == [
            ("draft", "awaiting_approval"),
            ("publish", "pending"),
        ]

        # Someone else's run is not found; a bad decision is refused.
        async with api.client("alice") as other:
            assert (await other.post(f"/api/jobs/{run}/resume", json={"decision": "approve"})).status_code == 404
        assert (await c.post(f"/api/jobs/{run}/resume", json={"decision": "maybe"})).status_code == 400
        assert (await c.post(f"/api/jobs/{run}/resume", json={"decision": "reject"})).status_code == 400

        r = await c.post(f"/api/jobs/{run}/resume", json={"decision": "reject", "feedback": "shorter, please"})
        assert r.status_code == 200, r.text
        await watcher.until(
            "SELECT true FROM pgcue.pipeline_stages WHERE job_id = $1 AND name = 'draft'"
            " AND state = 'awaiting_approval' AND iteration = 2",
            run,
        )
        draft = (await stages(pool, run))["draft"]
        assert loads(draft["result"])["feedbackSeen"] == ["shorter, please"]
        assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs WHERE state = 'running'") == 0

        r = await c.post(f"/api/jobs/{run}/resume", json={"decision": "approve"})
        assert r.status_code == 200, r.text
        await watcher.states([run], {"completed"}, timeout=20)
        # Nothing waits any more: resuming again is a conflict.
        r = await c.post(f"/api/jobs/{run}/resume", json={"decision": "approve"})
        assert r.status_code == 409, r.text
        assert (await c.get("/api/stats")).json()["pipelinesAwaitingApproval"] == 0

    feedback = loads((await stages(pool, run))["draft"]["feedback"])
    assert [(f["by"], f["passed"], f["feedback"]) for f in feedback] == [
        ("person", False, "shorter, please"),
        ("person", True, ""),
    ]
    events = await stage_events(pool, run)
    assert [e for e in events if e[0] == "draft"][-1] == ("draft", "done", 2)


async def test_cancel_during_stage_two_stops_at_the_boundary(
    queue: Queue, pool: asyncpg.Pool, watcher: Watcher, spawn_worker: Any
) -> None:
    await spawn_worker("orchestrate", "p-work", extra=PIPELINE_TYPES).started()
    run = await start_run(queue, "t-long")
    child = await watcher.until(
        "SELECT j.id FROM pgcue.pipeline_stages s JOIN pgcue.jobs j ON j.id = s.child_id"
        " WHERE s.job_id = $1 AND s.name = 'second' AND j.state = 'running'",
        run,
    )
    cancelled = await queue.cancel(run)
    assert cancelled.state.value == "cancelled"  # it was parked: cancelled at once
    await watcher.states([child], {"cancelled"}, timeout=10)  # at the child's next checkpoint

    got = await stages(pool, run)
    assert {name: s["state"] for name, s in got.items()} == {
        "first": "done",
        "second": "cancelled",
        "third": "skipped",
    }
    assert loads(got["first"]["result"])["text"] == "first draft 1"  # done work stays
    assert got["second"]["result"] is None and got["third"]["child_id"] is None  # nothing half-written
    assert await pool.fetchval("SELECT result FROM pgcue.jobs WHERE id = $1", child) is None
    assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs WHERE parent_id = $1", run) == 2
    assert (await queue.get(run)).state.value == "cancelled"
    events = await stage_events(pool, run)
    assert events[-2:] == [("second", "cancelled", 1), ("third", "skipped", 0)]


async def test_killed_orchestrator_resumes_at_the_same_stage(
    queue: Queue, pool: asyncpg.Pool, watcher: Watcher, spawn_worker: Any, trace_dir: Path
) -> None:
    first = await spawn_worker("orchestrate", "p-work", extra=PIPELINE_TYPES).started()
    run = await start_run(queue, "t-crash")
    await watcher.until(  # stage two's work has started (its handler wrote its stage)
        "SELECT true FROM pgcue.pipeline_stages s JOIN pgcue.job_events e ON e.job_id = s.child_id"
        " WHERE s.job_id = $1 AND s.name = 'second' AND e.kind = 'stage:updated'",
        run,
    )
    first.signal(signal.SIGKILL)
    assert await first.wait_exit(10) == -signal.SIGKILL

    await spawn_worker("orchestrate", "p-work", extra=PIPELINE_TYPES).started()
    await watcher.states([run], {"completed"}, timeout=30)

    got = await stages(pool, run)
    assert all(s["state"] == "done" and s["iteration"] == 1 for s in got.values())
    runs = {}
    for pid, event, job_id, attempt in read_trace(trace_dir):
        runs.setdefault(event, []).append((pid, job_id, attempt))
    assert len(runs["work:first"]) == 1  # done work is not repeated
    assert len(runs["work:third"]) == 1
    second = runs["work:second"]
    assert len(second) == 2 and len({pid for pid, _, _ in second}) == 2  # the killed try, then the rescued one
    assert len({job_id for _, job_id, _ in second}) == 1  # the same child job, rescued, not a new one
    assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs WHERE parent_id = $1", run) == 3
