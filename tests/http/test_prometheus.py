"""The dashboards and alert rules against a real Prometheus.

A real API (`pgcue serve`) and a real worker (`pgcue worker --metrics-port`) run jobs of
every outcome; a real Prometheus scrapes both every second. Then every expression of
every Grafana panel must evaluate without error and return data (so a panel that queries
a metric nobody exports fails here), every alert rule must evaluate without error and
every metric it reads must exist, and promtool must accept the config, the rules and the
exposition of both processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from pgcue.core.config import Settings
from pgcue.core.models import NewJob
from pgcue.core.queue import Queue
from tests.conftest import ROOT, Watcher

OPS = ROOT / "ops"
DASHBOARDS = sorted((OPS / "grafana" / "dashboards").glob("*.json"))
RULES = OPS / "prometheus" / "alerts.yml"
# Grafana's variables, as a person would set them: the drill-down looks at t-flaky, a
# type whose jobs were started, retried and failed here.
VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "$type": "t-flaky"}


def binaries() -> tuple[str, str]:
    """prometheus and promtool, installing Debian's package when they are missing."""
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip("prometheus is not installed and apt-get cannot install it (needs root and Debian)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]):
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                pytest.skip(f"cannot install Debian's prometheus package: {done.stderr.strip()[-300:]}")
    return shutil.which("prometheus") or "prometheus", shutil.which("promtool") or "promtool"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited with {proc.returncode} before {url} answered")
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout}s")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def api(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """`pgcue serve` on a free loopback port; its base URL."""
    port = free_port()
    env = {**os.environ, "PGCUE_DATABASE_URL": settings.database_url, "PGCUE_LOG_FORMAT": "json"}
    log = (tmp_path / "api.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgcue.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
        log.close()


def dashboard_expressions() -> list[tuple[str, str]]:
    """(where, expr) of every target of every panel, nested rows included."""
    out = []

    def walk(panels: list[dict[str, Any]], board: str) -> None:
        for panel in panels:
            walk(panel.get("panels", []), board)
            for target in panel.get("targets", []):
                out.append((f"{board} / {panel['title']} / {target['refId']}", target["expr"]))

    for path in DASHBOARDS:
        walk(json.loads(path.read_text())["panels"], path.stem)
    return out


def rule_expressions() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(rule.get("alert") or rule["record"], rule["expr"]) for g in groups for rule in g["rules"]]


def substitute(expr: str) -> str:
    for name, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


class Prom:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = r.json()
        if body.get("status") != "success":
            raise AssertionError(f"{expr}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]  # type: ignore[no-any-return]

    def value(self, expr: str) -> float:
        result = self.query(expr)["result"]
        return float(result[0]["value"][1]) if result else float("nan")

    async def until(self, expr: str, ok: Any, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not ok(await asyncio.to_thread(self.value, expr)):
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus: {expr} did not become as expected within {timeout}s")
            await asyncio.sleep(0.25)


@pytest.mark.timeout(120)
async def test_every_panel_and_alert_evaluates_with_data_in_a_real_prometheus(
    settings: Settings, queue: Queue, watcher: Watcher, spawn_worker: Any, api: str, tmp_path: Path
) -> None:
    prometheus, promtool = binaries()
    for argv in (
        [promtool, "check", "config", str(OPS / "prometheus" / "prometheus.yml")],
        [promtool, "check", "rules", str(RULES)],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr

    metrics_port = free_port()
    worker = spawn_worker(
        "t-count", "t-flaky", "t-slow", extra=["--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1"]
    )
    await worker.started()
    worker_url = f"http://127.0.0.1:{metrics_port}/metrics"

    # Both expositions pass promtool's lint (names, units, _total, help).
    for url in (f"{api}/metrics", worker_url):
        text = (await asyncio.to_thread(httpx.get, url, timeout=10)).text
        lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert lint.returncode == 0, f"{url}: {lint.stdout}{lint.stderr}"

    prom_port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "pgcue-api", "static_configs": [{"targets": [api.removeprefix("http://")]}]},
            {"job_name": "pgcue-worker", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        prom = Prom(f"http://127.0.0.1:{prom_port}")
        await asyncio.to_thread(wait_http, f"{prom.url}/-/ready", 30.0, proc)
        await prom.until('sum(up{job=~"pgcue-.*"})', lambda v: v == 2)

        # Jobs of every outcome, after the first scrape, so rates move.
        ok = await queue.enqueue_many([NewJob(type="t-count", channel_id="c", payload={"n": i}) for i in range(20)])
        bad = await queue.enqueue_many([NewJob(type="t-flaky", channel_id="c", max_attempts=2) for _ in range(2)])
        slow = await queue.enqueue(NewJob(type="t-slow", channel_id="c", payload={"steps": 100, "step": 0.05}))
        await watcher.until("SELECT state = 'running' FROM pgcue.jobs WHERE id = $1", slow.id)
        await queue.cancel(slow.id)
        await watcher.states([*ok, *bad, slow.id], timeout=30)
        for path in ("/healthz", "/readyz"):
            await asyncio.to_thread(httpx.get, f"{api}{path}", timeout=10)

        await prom.until('sum(pgcue_jobs{state="completed"})', lambda v: v == 20)
        await prom.until("sum(pgcue_jobs_failed_total)", lambda v: v == 2)
        await prom.until("sum(pgcue_jobs_cancelled_total)", lambda v: v == 1)
        await prom.until("sum(pgcue_jobs_retried_total)", lambda v: v == 2)
        await prom.until("sum(pgcue_jobs_completed_total)", lambda v: v == 20)
        await prom.until('sum(pgcue_http_requests_total{route="/readyz"})', lambda v: v >= 1)

        problems = []
        panels = dashboard_expressions()
        assert len(panels) > 20
        for where, expr in panels:
            try:
                if not (await asyncio.to_thread(prom.query, substitute(expr)))["result"]:
                    problems.append(f"panel {where}: no data for {expr}")
            except AssertionError as exc:
                problems.append(f"panel {where}: {exc}")

        rules = rule_expressions()
        assert {name for name, _ in rules} >= {
            "PgcueQueueBackingUp",
            "PgcueFailureRateHigh",
            "PgcueNoWorkerForType",
            "PgcueListenerDisconnected",
            "PgcueJobsRescued",
        }
        for name, expr in rules:
            try:
                await asyncio.to_thread(prom.query, expr)  # evaluates (an alert that does not fire is empty)
                for metric in sorted(set(re.findall(r"\bpgcue_[a-z_]+\b", expr))):
                    if not (await asyncio.to_thread(prom.query, f"count({metric})"))["result"]:
                        problems.append(f"rule {name}: reads {metric}, which nobody exports")
            except AssertionError as exc:
                problems.append(f"rule {name}: {exc}")

        # Prometheus itself loaded and evaluated every rule without error.
        deadline = time.monotonic() + 10
        while True:
            answer = await asyncio.to_thread(httpx.get, f"{prom.url}/api/v1/rules", timeout=10)
            loaded = answer.json()["data"]["groups"]
            health = {r["name"]: (r["health"], r.get("lastError", "")) for g in loaded for r in g["rules"]}
            if all(h == "ok" for h, _ in health.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        assert len(health) == len(rules)
        problems += [f"rule {n}: health {h} {e}" for n, (h, e) in health.items() if h != "ok"]
        assert not problems, "\n".join(problems)
    finally:
        stop(proc)
        log.close()
