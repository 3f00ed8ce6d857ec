"""The image, run for real against this machine's PostgreSQL (host networking, a database
of its own, dropped after): the API and three worker containers (echo, tts, sleep) run as
a fixed non-root user on a read-only root filesystem; a job enqueued over HTTP from the
host completes; a tts artifact is a valid WAV; every container's /metrics and /healthz
answer; `docker stop` of a worker mid-job gives the job back within its grace period
without charging an attempt; each container holds the connections docs/deploy.md says."""

from __future__ import annotations

import io
import json
import socket
import time
import uuid
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql as psql

from tests.conftest import BASE_DSN, dsn_for
from tests.containers.conftest import IMAGE, docker

pytestmark = pytest.mark.timeout(300)
SLEEP_GRACE = 3  # the sleep worker's PGCUE_SHUTDOWN_GRACE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    dsn: str
    key: str
    api: str
    label: str
    containers: dict[str, str] = field(default_factory=dict)  # role: container name
    metrics: dict[str, int] = field(default_factory=dict)  # role: metrics port on the host

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api, headers={"Authorization": f"Bearer {self.key}"}, timeout=20)

    def wait_job(self, job_id: str, states: set[str], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while True:
                job: dict[str, Any] = c.get(f"/api/jobs/{job_id}").json()["job"]
                if job["state"] in states:
                    return job
                if time.monotonic() > deadline:
                    raise AssertionError(f"job {job_id} still {job['state']} after {timeout}s: {job}")
                time.sleep(0.2)


def _run(stack_label: str, dsn: str, *args: str) -> str:
    """A one-off container (migrate, keys create): its stdout."""
    return docker(
        "run", "--rm", "--network", "host", "--read-only", "--tmpfs", "/tmp",
        "--label", stack_label, "-e", f"PGCUE_DATABASE_URL={dsn}", IMAGE, *args,
    ).stdout.strip()  # fmt: skip


def _wait_healthy(names: list[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = {n: docker("inspect", "-f", "{{.State.Health.Status}}", n).stdout.strip() for n in names}
        if all(s == "healthy" for s in states.values()):
            return
        if time.monotonic() > deadline:
            logs = {n: docker("logs", "--tail", "20", n, check=False).stderr for n in names}
            raise AssertionError(f"containers not healthy after {timeout}s: {states}\n{logs}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    tag = uuid.uuid4().hex[:8]
    label = f"pgcue-test={tag}"
    dbname = f"pgcue_deploy_{tag}"
    volume = f"pgcue-test-artifacts-{tag}"
    with psycopg.connect(BASE_DSN, autocommit=True) as conn:
        conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(dbname)))
    dsn = dsn_for(dbname)
    try:
        assert "applied 0001_core" in _run(label, dsn, "migrate")  # the migrations ship in the image
        key = _run(label, dsn, "keys", "create", "--user", "deploy", "--plan", "paid", "--channel", "deploy")
        docker("volume", "create", "--label", label, volume)
        api_port = _free_port()
        stack = Stack(dsn=dsn, key=key.splitlines()[-1], api=f"http://127.0.0.1:{api_port}", label=label)
        common = [
            "--network", "host", "--read-only", "--tmpfs", "/tmp", "--label", label,
            "-v", f"{volume}:/var/lib/pgcue/artifacts", "-e", f"PGCUE_DATABASE_URL={dsn}",
            "--health-interval", "2s",
        ]  # fmt: skip
        roles: dict[str, list[str]] = {"api": ["-e", f"PGCUE_PORT={api_port}", IMAGE]}  # the image's CMD: serve
        for role in ("echo", "tts", "sleep"):
            port = _free_port()
            stack.metrics[role] = port
            env = ["-e", f"PGCUE_SHUTDOWN_GRACE={SLEEP_GRACE}"] if role == "sleep" else []
            roles[role] = [*env, IMAGE, "worker", "--type", role, "--metrics-port", str(port)]
        for role, args in roles.items():
            name = f"pgcue-test-{role}-{tag}"
            docker("run", "-d", "--name", name, *common, *args)
            stack.containers[role] = name
        _wait_healthy(list(stack.containers.values()))
        yield stack
    finally:
        for name in docker("ps", "-aq", "--filter", f"label={label}", check=False).stdout.split():
            docker("rm", "-f", name, check=False)
        docker("volume", "rm", "-f", volume, check=False)
        with psycopg.connect(BASE_DSN, autocommit=True) as conn:
            conn.execute(psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(dbname)))


def test_the_image_runs_as_a_fixed_non_root_user_under_tini_with_a_healthcheck(stack: Stack) -> None:
    cfg = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", IMAGE).stdout)
    assert cfg["User"] == "10001:10001"
    assert cfg["Entrypoint"] == ["/usr/bin/tini", "--", "/opt/pgcue/bin/pgcue"]
    assert cfg["Healthcheck"]["Test"][0] == "CMD" and "healthcheck.py" in " ".join(cfg["Healthcheck"]["Test"])
    assert "/var/lib/pgcue/artifacts" in cfg["Volumes"]
    for role, name in stack.containers.items():
        assert docker("exec", name, "id", "-u").stdout.strip() == "10001", role
        # PID 1 is tini; pgcue is its child, with no shell between them.
        assert docker("exec", name, "cat", "/proc/1/comm").stdout.strip() == "tini"
        children = docker("exec", name, "cat", "/proc/1/task/1/children").stdout.split()
        (child,) = children
        cmdline = docker("exec", name, "cat", f"/proc/{child}/cmdline").stdout.split("\0")
        assert cmdline[0].startswith("/opt/pgcue/bin/python") and cmdline[1] == "/opt/pgcue/bin/pgcue", cmdline
        refused = docker("exec", name, "touch", "/opt/pgcue/x", check=False)
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr


def test_a_job_enqueued_over_http_from_the_host_completes(stack: Stack) -> None:
    with stack.client() as c:
        r = c.post("/api/jobs", json={"type": "echo", "channelId": "deploy", "payload": {"hi": 1}})
    assert r.status_code == 201, r.text
    job = stack.wait_job(r.json()["job"]["id"], {"completed", "failed"})
    assert job["state"] == "completed" and job["result"] == {"hi": 1}


def test_a_tts_artifact_is_a_valid_wav(stack: Stack) -> None:
    payload = {"text": "Welcome back to the studio. This came from a container.", "format": "wav"}
    with stack.client() as c:
        r = c.post("/api/jobs", json={"type": "tts", "channelId": "deploy", "payload": payload})
        assert r.status_code == 201, r.text
        job = stack.wait_job(r.json()["job"]["id"], {"completed", "failed"}, timeout=90)
        assert job["state"] == "completed", job
        art = c.get(f"/api/jobs/{job['id']}/artifact")
    assert art.status_code == 200 and art.headers["content-type"].startswith("audio/")
    assert art.content[:4] == b"RIFF" and art.content[8:12] == b"WAVE"
    with wave.open(io.BytesIO(art.content)) as w:
        assert w.getnchannels() >= 1 and w.getframerate() >= 8000
        seconds = w.getnframes() / w.getframerate()
    assert 1.0 < seconds < 30, seconds


def test_every_container_answers_metrics_and_healthz(stack: Stack) -> None:
    api = httpx.get(f"{stack.api}/metrics", timeout=10)
    assert (api.status_code == 200 and "pgcue_http_requests_total" in api.text) or "pgcue_" in api.text
    assert httpx.get(f"{stack.api}/healthz", timeout=10).json()["status"] == "ok"
    for role, port in stack.metrics.items():
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert metrics.status_code == 200
        assert f'pgcue_worker_concurrency_slots{{type="{role}"}}' in metrics.text, role
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()["status"] == "ok"


def test_each_container_holds_the_connections_it_should(stack: Stack) -> None:
    """docs/deploy.md's figures: the API a pool of at most PGCUE_API_POOL_SIZE (10) and one
    LISTEN connection; each worker a pool of at most 4 and one LISTEN connection; one
    maintenance lock in the whole fleet, on a pooled connection of its leader."""
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1"
        ).fetchall()
        leaders = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND ((classid::int8 << 32) | objid::int8) = hashtext('pgcue.maintenance')::int8"
        ).fetchone()
    held = dict(rows)
    print(f"connections by application_name: {held}")
    assert held.get("pgcue-api-listen") == 1
    assert 1 <= held.get("pgcue-api", 0) <= 10
    assert held.get("pgcue-worker-listen") == 3  # one per worker container
    assert 3 <= held.get("pgcue-worker", 0) <= 3 * 4
    assert leaders == (1,)


def test_docker_stop_gives_a_long_job_back_within_the_grace_without_charging_an_attempt(stack: Stack) -> None:
    with stack.client() as c:
        r = c.post(
            "/api/jobs", json={"type": "sleep", "channelId": "deploy", "payload": {"seconds": 120, "steps": 240}}
        )
    assert r.status_code == 201, r.text
    job_id = r.json()["job"]["id"]
    running = stack.wait_job(job_id, {"running"}, timeout=30)
    assert running["attempts"] == 1
    name = stack.containers["sleep"]
    began = time.monotonic()
    docker("stop", "-t", "60", name, timeout=90)  # SIGTERM; docker would SIGKILL only after 60 s
    took = time.monotonic() - began
    assert took < SLEEP_GRACE + 10, f"docker stop took {took:.1f}s (grace {SLEEP_GRACE}s)"
    assert docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip() == "0"  # not killed
    back = stack.wait_job(job_id, {"queued"}, timeout=10)
    assert back["attempts"] == 0 and back["errors"] == []  # given back, not charged, not failed
    logs = docker("logs", name).stderr
    assert "waiting for running jobs" in logs and "gave jobs back" in logs
    with stack.client() as c:  # no sleep worker left to run it
        assert c.post(f"/api/jobs/{job_id}/cancel").status_code == 200
