"""The client stands alone: importing it loads nothing of the server; it imports from pgcue
only the wire format and the states; its extra pulls in only HTTP and msgspec. And its
retry policy and its reading of a job's state."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pgcue.client import AwaitingApproval, JobCancelled, JobFailed, JobOut, RetryPolicy
from pgcue.client.core import outcome
from pgcue.client.errors import Forbidden, NotFound, ServiceUnavailable, api_error, retry_after

ROOT = Path(__file__).resolve().parents[2]
SERVER_MODULES = ("asyncpg", "psycopg", "litestar", "uvicorn", "structlog", "jsonschema_rs", "prometheus_client")


def test_importing_the_client_loads_nothing_of_the_server() -> None:
    code = (
        "import sys, pgcue.client\n"
        "from pgcue import Client, AsyncClient\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {SERVER_MODULES!r})\n"
        "bad += sorted(m for m in sys.modules if m.startswith('pgcue.') and not "
        "m.startswith(('pgcue.client', 'pgcue.core.wire', 'pgcue.core.states')) and m != 'pgcue.core')\n"
        "assert not bad, bad\n"
        "assert Client is pgcue.client.Client\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_client_imports_only_the_wire_format_and_the_states_of_pgcue() -> None:
    allowed = {"pgcue.core.wire", "pgcue.core.states"}
    for path in sorted((ROOT / "service" / "client").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("pgcue") and not name.startswith("pgcue.client"):
                    assert name in allowed, f"{path.name} imports {name}"


def test_the_client_extra_is_http_and_msgspec_only_and_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # The base install is the client: its dependencies are the client's, and the client
    # extra adds nothing; the server's packages come with the server extra.
    assert sorted(d.split(">")[0] for d in project["dependencies"]) == ["httpx", "msgspec"]
    assert project["optional-dependencies"]["client"] == []
    pins = {line.split("==")[0].lower() for line in (ROOT / "constraints.txt").read_text().split() if "==" in line}
    assert {"httpx", "msgspec"} <= pins


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    policy = RetryPolicy(retries=4, backoff=0.25, max_backoff=5.0)
    for attempt, ceiling in [(0, 0.25), (1, 0.5), (2, 1.0), (3, 2.0), (6, 5.0), (60, 5.0)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered
    assert policy.delay(0, retry_after=3.0) == 3.0
    assert policy.delay(0, retry_after=3600.0) == 30.0  # a Retry-After is cut to 30 s
    assert retry_after({"Retry-After": "2"}) == 2.0
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None


def test_problems_map_to_their_exceptions() -> None:
    body = b'{"type":"https://pgcue.dev/problems/plan-required","title":"Plan","status":403,"detail":"d","field":"type","requiredPlan":"paid"}'
    err = api_error(403, "Forbidden", {"content-type": "application/problem+json"}, body)
    assert isinstance(err, Forbidden) and err.required_plan == "paid" and err.field == "type"
    assert str(err) == "403 Plan: d (field: type)"
    down = api_error(503, "Service Unavailable", {"content-type": "text/html", "retry-after": "1"}, b"<h1>down</h1>")
    assert isinstance(down, ServiceUnavailable) and down.detail == "<h1>down</h1>" and down.retry_after == 1.0
    assert isinstance(api_error(404, "Not Found", {}, b""), NotFound)


def _job(**fields: object) -> JobOut:
    base: dict[str, object] = dict(
        id="j", type="t", channel_id="c", state="queued", cancel_requested=False, result_path=None, result=None,
        error_message=None, attempts=0, max_attempts=3, progress=0, progress_message=None, stage=None, priority=0,
        payload={}, errors=[], run_at="x", created_at="x", started_at=None, completed_at=None, updated_at="x",
        duration_ms=None,
    )  # fmt: skip
    base.update(fields)
    return JobOut(**base)  # type: ignore[arg-type]


def test_what_wait_makes_of_each_state() -> None:
    assert outcome(_job(state="completed", result_path="p")) is not None
    assert outcome(_job(state="running")) is None
    assert outcome(_job(state="queued", waiting_for="children")) is None
    assert outcome(_job(state="queued", waiting_for="approval"), stop_at_approval=False) is None
    with pytest.raises(AwaitingApproval):
        outcome(_job(state="queued", waiting_for="approval", stage="draft"))
    with pytest.raises(JobFailed) as failed:
        outcome(_job(state="failed", error_message="boom", attempts=3))
    assert (failed.value.message, failed.value.attempts) == ("boom", 3)
    with pytest.raises(JobCancelled):
        outcome(_job(state="cancelled"))
