"""ops/compose.yaml brings the whole stack up (PostgreSQL, the migration, the API, one
worker per job type, Prometheus) and down again. With no registry to pull from, the
PostgreSQL and Prometheus images are stand-ins built here from Debian's packages
(ops/docker/stand-ins/), given to the same file through its image variables."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT
from tests.containers.conftest import IMAGE, STAND_IN_POSTGRES, STAND_IN_PROMETHEUS, compose_command, docker

pytestmark = pytest.mark.timeout(420)
COMPOSE_FILE = ROOT / "ops" / "compose.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last})")


def test_compose_brings_the_stack_up_scrapes_every_worker_and_takes_it_down() -> None:
    project = f"pgcuetest{uuid.uuid4().hex[:8]}"
    api_port, prom_port = _free_port(), _free_port()
    env = dict(
        os.environ,
        PGCUE_IMAGE=IMAGE,
        PGCUE_POSTGRES_IMAGE=STAND_IN_POSTGRES,
        PGCUE_PROMETHEUS_IMAGE=STAND_IN_PROMETHEUS,
        PGCUE_API_PORT=str(api_port),
        PGCUE_PROMETHEUS_PORT=str(prom_port),
    )
    compose = [*compose_command(), "-p", project, "-f", str(COMPOSE_FILE)]

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*compose, *args], env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"compose {' '.join(args)}: {done.stderr[-3000:]}"
        return done

    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    workers = sorted(name for name in services if name.startswith("worker-"))
    try:
        run("up", "-d")  # the one command (make up runs it after building the image)
        api = f"http://127.0.0.1:{api_port}"
        _until("the API is ready", lambda: httpx.get(f"{api}/readyz", timeout=5).status_code == 200, 180)
        created = run("run", "--rm", "-T", "migrate", "keys", "create", "--user", "dev", "--plan", "paid",
                      "--channel", "demo")  # fmt: skip
        key = created.stdout.strip().splitlines()[-1]
        headers = {"Authorization": f"Bearer {key}"}
        r = httpx.post(f"{api}/api/jobs", headers=headers, json={"type": "echo", "channelId": "demo"}, timeout=20)
        assert r.status_code == 201, r.text
        job_id = r.json()["job"]["id"]

        def completed() -> bool:
            job = httpx.get(f"{api}/api/jobs/{job_id}", headers=headers, timeout=10).json()["job"]
            return bool(job["state"] == "completed")

        _until("the echo job completes", completed, 60)

        def all_up() -> dict[str, str] | None:
            targets = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/targets", timeout=5).json()
            health = {t["labels"]["instance"]: t["health"] for t in targets["data"]["activeTargets"]}
            return health if len(health) == 1 + len(workers) and set(health.values()) == {"up"} else None

        health = _until("Prometheus scrapes the API and every worker", all_up, 90)
        assert sorted(h.split(":")[0] for h in health if h.startswith("worker-")) == workers
        ps = docker("ps", "--filter", f"label=com.docker.compose.project={project}", "--format", "{{.Names}}")
        assert len(ps.stdout.split()) == len(services) - 1  # all but the finished migration
    finally:
        down = subprocess.run([*compose, "down", "-v"], env=env, capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stderr[-2000:]
    left = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").stdout.split()
    assert left == []
    volumes = docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}").stdout.split()
    assert volumes == []
