"""The `pgcue` command as a user runs it: real processes, one-line errors, exit codes."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import run_cli


async def test_enqueue_and_wait_reaches_completed(database: str, spawn_worker: Any) -> None:
    await spawn_worker("echo").started()
    result = run_cli(
        "jobs", "enqueue", "--type", "echo", "--channel", "demo", "--payload", '{"hi": 1}', "--wait", "20", dsn=database
    )
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["state"] == "completed" and job["result"] == {"hi": 1} and job["durationMs"] is not None

    got = json.loads(run_cli("jobs", "get", job["id"], dsn=database).stdout)
    assert got["id"] == job["id"]
    listed = json.loads(run_cli("jobs", "list", "--channel", "demo", dsn=database).stdout)
    assert [j["id"] for j in listed] == [job["id"]]
    refused = run_cli("jobs", "cancel", job["id"], dsn=database)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"pgcue: cannot cancel job {job['id']}: it is completed; only queued or running jobs can be cancelled"
    )


def test_cancel_retry_and_idempotency_from_the_cli(database: str) -> None:
    first = json.loads(
        run_cli(
            "jobs", "enqueue", "--type", "echo", "--channel", "c", "--key", "k", "--delay", "3600", dsn=database
        ).stdout
    )
    again = json.loads(
        run_cli("jobs", "enqueue", "--type", "echo", "--channel", "c", "--key", "k", dsn=database).stdout
    )
    assert again["id"] == first["id"]
    cancelled = json.loads(run_cli("jobs", "cancel", first["id"], dsn=database).stdout)
    assert cancelled["state"] == "cancelled"
    retried = json.loads(run_cli("jobs", "retry", first["id"], dsn=database).stdout)
    assert retried["state"] == "queued"


def test_bad_input_is_one_line_and_a_non_zero_exit(database: str) -> None:
    cases = [
        (["jobs", "enqueue", "--type", "nope", "--channel", "c"], 1, "unknown job type: nope"),
        (
            ["jobs", "enqueue", "--type", "echo", "--channel", "c", "--payload", "{bad"],
            1,
            "--payload is not valid JSON",
        ),
        (["jobs", "enqueue", "--type", "echo", "--channel", "c", "--payload", '"\\u0000"'], 1, "NUL"),
        (["jobs", "enqueue", "--type", "echo", "--channel", "c", "--run-at", "tomorrow"], 1, "ISO 8601"),
        (["jobs", "get", "not-a-uuid"], 1, "is not a job id"),
        (["jobs", "get", "00000000-0000-0000-0000-000000000000"], 1, "not found"),
        (["worker", "--type", "no-such-type"], 1, "unknown job type 'no-such-type'"),
        (
            ["worker", "--import", "tests.helpers.handlerless", "--type", "t-nohandler"],
            1,
            "no handler for job type(s) t-nohandler",
        ),
        (["worker", "--type", "echo", "--concurrency", "0"], 2, "must be at least 1"),
    ]
    for args, code, message in cases:
        result = run_cli(*args, dsn=database)
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        if code == 1:
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Job" not in run_cli("jobs", "list", dsn=database).stdout  # nothing was written
    assert json.loads(run_cli("jobs", "list", dsn=database).stdout) == []


def test_an_unreachable_database_is_a_one_line_error() -> None:
    result = run_cli("jobs", "list", dsn="postgresql://postgres@127.0.0.1:1/none", timeout=30)
    assert result.returncode == 1
    assert result.stderr.startswith("pgcue: database error:") and len(result.stderr.strip().splitlines()) == 1
