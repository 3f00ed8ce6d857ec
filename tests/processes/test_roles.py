"""The process roles a deployment runs (ops/k8s, compose.yaml): a worker that ends by
itself after its jobs or when idle (a Kubernetes Job's pod), the maintenance-only process,
a worker's /healthz beside its metrics, and an init container's wait for the migration."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import psycopg
import pytest

from pgcue.core import migrate
from pgcue.core.config import Settings
from pgcue.core.models import NewJob
from pgcue.core.queue import Queue
from pgcue.workers.runtime import registry
from pgcue.workers.runtime.worker import HEALTH_STALL_SECONDS, Worker
from tests.conftest import ROOT, Watcher, direct_dsn

pytestmark = pytest.mark.timeout(90)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_worker_with_max_jobs_runs_that_many_then_exits_0(
    queue: Queue, spawn_worker: Any, watcher: Watcher
) -> None:
    ids = await queue.enqueue_many([NewJob(type="echo", channel_id="ch", payload={"n": i}) for i in range(3)])
    worker = spawn_worker("echo", extra=["--max-jobs", "2", "--idle-exit", "60"])
    assert await worker.wait_exit(30) == 0
    states = sorted([(await queue.get(i)).state for i in ids])
    assert states == ["completed", "completed", "queued"]  # two claimed and finished, one left for the next pod
    assert worker.wait_log("ran its jobs; exiting")["jobs"] == 2


async def test_a_worker_with_nothing_to_do_exits_0_after_idle_exit(spawn_worker: Any) -> None:
    began = time.monotonic()
    worker = spawn_worker("echo", extra=["--max-jobs", "1", "--idle-exit", "1"])
    assert await worker.wait_exit(30) == 0
    assert worker.wait_log("idle; exiting")["jobs"] == 0
    assert time.monotonic() - began < 20


async def test_the_maintenance_process_leads_runs_no_type_and_answers_healthz(
    queue: Queue, spawn_worker: Any, watcher: Watcher
) -> None:
    port = _free_port()
    lead = spawn_worker(command="maintenance", extra=["--metrics-port", str(port)])
    await lead.started()
    await asyncio.to_thread(lead.wait_log, "leading maintenance", 20)
    async with httpx.AsyncClient(timeout=5) as c:
        health = await c.get(f"http://127.0.0.1:{port}/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert "pgcue_worker_running_jobs" in (await c.get(f"http://127.0.0.1:{port}/metrics")).text
    # It claims nothing: a queued job stays queued.
    (job_id,) = await queue.enqueue_many([NewJob(type="echo", channel_id="ch")])
    await asyncio.sleep(1.5)
    assert (await queue.get(job_id)).state == "queued"
    # A worker beside it that may not lead still runs the job.
    await spawn_worker("echo", extra=["--no-maintenance"]).started()
    await watcher.states([job_id], {"completed"})
    lead.signal(signal.SIGTERM)
    assert await lead.wait_exit(30) == 0


async def test_a_worker_answers_healthz_on_its_metrics_port(spawn_worker: Any) -> None:
    port = _free_port()
    worker = await spawn_worker("echo", extra=["--metrics-port", str(port)]).started()
    async with httpx.AsyncClient(timeout=5) as c:
        r = await c.get(f"http://127.0.0.1:{port}/healthz")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    worker.signal(signal.SIGTERM)
    assert await worker.wait_exit(30) == 0


def test_health_says_when_the_loop_has_stalled() -> None:
    registry.load()
    worker = Worker(Settings(), [registry.get("echo")])
    assert worker.health() == (True, "ok")
    worker.ticked -= HEALTH_STALL_SECONDS + 1
    ok, why = worker.health()
    assert not ok and "has not run" in why


def test_migrate_check_wait_waits_for_another_process_to_migrate(empty_database: str) -> None:
    env = {"PGCUE_DATABASE_URL": empty_database, "PGCUE_DIRECT_DATABASE_URL": direct_dsn(empty_database)}
    waiting = subprocess.Popen(
        [sys.executable, "-m", "pgcue.cli", "migrate", "--check", "--wait", "60"],
        cwd=ROOT,
        env={**os.environ, **env, "PGCUE_LOG_FORMAT": "json"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    assert waiting.poll() is None  # nothing migrated yet: it waits
    with psycopg.connect(direct_dsn(empty_database), autocommit=True) as conn:
        migrate.migrate(conn, "pgcue")
    out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 0, err
    assert "is current" in out and "waiting for the migration" in err
