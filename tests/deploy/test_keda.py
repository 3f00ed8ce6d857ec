"""Each type's KEDA query, exactly as the committed tree has it, run against a real pgcue
schema holding a known mix of jobs: it counts the type's running jobs and its runnable
ones (queued, due, neither the type nor the channel paused) and nothing else, and the
replica count KEDA derives from it (ceil(signal / targetQueryValue), within min and max)
is the one expected. Also through PgBouncer under `pytest --pgbouncer`, which is how the
query would reach a pooled database (KEDA itself is pointed at the direct DSN)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import yaml

from pgcue.core.models import NewJob
from pgcue.core.queue import Queue
from tests.conftest import valid_payload
from tests.deploy.helpers import K8S

pytestmark = pytest.mark.timeout(120)


def triggers() -> dict[str, dict[str, Any]]:
    """{type: {query, target, max, min}} from ops/k8s/workers/*.yaml."""
    out = {}
    for path in sorted((K8S / "workers").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] in ("ScaledObject", "ScaledJob"):
                (trigger,) = doc["spec"]["triggers"]
                out[path.stem] = {
                    "query": trigger["metadata"]["query"],
                    "target": float(trigger["metadata"]["targetQueryValue"]),
                    "activation": float(trigger["metadata"]["activationTargetQueryValue"]),
                    "max": doc["spec"]["maxReplicaCount"],
                    "min": doc["spec"]["minReplicaCount"],
                }
    return out


def replicas(signal: float, t: dict[str, Any]) -> int:
    """What KEDA asks for: 0 unless the signal passes the activation value, else the HPA's
    ceil(signal / target) within min and max (a ScaledJob: the Jobs it keeps active)."""
    if signal <= t["activation"]:
        return int(t["min"])
    return max(int(t["min"]), min(int(t["max"]), math.ceil(signal / t["target"])))


async def signal(pool: asyncpg.Pool, query: str) -> float:
    value = await pool.fetchval(query)
    return float(value)  # KEDA scans the one column into a float64


async def _mix(queue: Queue, pool: asyncpg.Pool, job_type: str) -> None:
    """Per type: 3 runnable in two channels, 1 running, 1 delayed an hour, 1 in a paused
    channel, 1 completed, 1 failed, 1 parked waiting for a person (run_at infinity)."""
    payload = valid_payload(job_type)
    later = datetime.now(UTC) + timedelta(hours=1)
    ids = await queue.enqueue_many(
        [
            NewJob(type=job_type, channel_id="keda-a", payload=payload),
            NewJob(type=job_type, channel_id="keda-a", payload=payload),
            NewJob(type=job_type, channel_id="keda-b", payload=payload),
            NewJob(type=job_type, channel_id="keda-run", payload=payload, priority=100),
            NewJob(type=job_type, channel_id="keda-a", payload=payload, run_at=later),
            NewJob(type=job_type, channel_id="keda-paused", payload=payload),
            NewJob(type=job_type, channel_id="keda-done", payload=payload),
            NewJob(type=job_type, channel_id="keda-done", payload=payload),
            NewJob(type=job_type, channel_id="keda-done", payload=payload),
        ]
    )
    running, done, failed, parked = ids[3], ids[6], ids[7], ids[8]
    await pool.execute(
        """UPDATE pgcue.jobs SET state = 'running', attempts = 1, started_at = now(), locked_by = 'keda-test',
                  lease_expires_at = now() + interval '1 hour' WHERE id = $1""",
        running,
    )
    await pool.execute("UPDATE pgcue.jobs SET state = 'completed', completed_at = now() WHERE id = $1", done)
    await pool.execute(
        "UPDATE pgcue.jobs SET state = 'failed', completed_at = now(), error_message = 'x' WHERE id = $1", failed
    )
    await pool.execute("UPDATE pgcue.jobs SET waiting_for = 'approval', run_at = 'infinity' WHERE id = $1", parked)


async def test_each_types_query_counts_its_runnable_and_running_jobs(queue: Queue, pool: asyncpg.Pool) -> None:
    found = triggers()
    assert len(found) >= 10
    for t in found.values():
        assert await signal(pool, t["query"]) == 0  # an empty queue: scaled to zero
        assert replicas(0, t) == 0
    await queue.fleet.set_channel_paused("keda-paused", True)
    for job_type in found:
        await _mix(queue, pool, job_type)
    for job_type, t in found.items():
        got = await signal(pool, t["query"])
        assert got == 4, f"{job_type}: 3 runnable + 1 running, not {got}"
        assert replicas(got, t) == min(t["max"], math.ceil(4 / t["target"])), job_type
    # A paused type keeps only what runs; its queued jobs wait for the resume, not for pods.
    await queue.fleet.set_type_paused("tts", True)
    assert await signal(pool, found["tts"]["query"]) == 1
    assert replicas(1, found["tts"]) == 1
    assert await signal(pool, found["echo"]["query"]) == 4  # other types are not affected
    await queue.fleet.set_type_paused("tts", False)
    # The delayed job counts once it is due; the paused channel's once it is resumed.
    due = """UPDATE pgcue.jobs SET run_at = now() - interval '1 second'
             WHERE type = 'tts' AND run_at > now() AND run_at < 'infinity'"""
    await pool.execute(due)
    await queue.fleet.set_channel_paused("keda-paused", False)
    assert await signal(pool, found["tts"]["query"]) == 6
    assert replicas(6, found["tts"]) == 3  # tts runs 2 per pod


async def test_a_backlog_is_counted_only_as_far_as_the_most_pods_can_run(queue: Queue, pool: asyncpg.Pool) -> None:
    t = triggers()["tts"]
    cap = int(t["max"] * t["target"])
    await queue.enqueue_many(
        [NewJob(type="tts", channel_id=f"c{i % 7}", payload=valid_payload("tts")) for i in range(cap + 50)]
    )
    got = await signal(pool, t["query"])
    assert got == cap  # the LIMIT: a deep backlog costs the query no more than this
    assert replicas(got, t) == t["max"]


async def test_render_asks_for_one_job_per_render(queue: Queue, pool: asyncpg.Pool) -> None:
    t = triggers()["render"]
    assert t["target"] == 1
    await queue.enqueue_many([NewJob(type="render", channel_id="r", payload=valid_payload("render")) for _ in range(3)])
    assert replicas(await signal(pool, t["query"]), t) == 3
