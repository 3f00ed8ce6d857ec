"""A request that poisons a batch: POST /api/jobs requests arriving together share one
INSERT (the API's group commit, pgcue.core.batching), so a value that reached PostgreSQL
and was refused there would fail every job of the batch, another tenant's included. One
tenant sends values the previous version let through to PostgreSQL, interleaved with the
other tenant's valid requests, all at once over real HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import httpx
import pytest

from pgcue.core.models import Job, NewJob
from tests.helpers.apiserver import Api

pytestmark = pytest.mark.timeout(120)

PROBLEM = "application/problem+json"
# (what the request carries, the field its problem must name)
POISON: list[tuple[dict[str, Any], str]] = [
    ({"runAt": "0001-01-01T00:00:00+14:00"}, "runAt"),  # before year 1 once in UTC
    ({"runAt": "0001-01-01T00:00:00Z"}, "runAt"),
    ({"runAt": "1969-12-31T23:59:59.999Z"}, "runAt"),  # before 1970
    ({"runAt": "9999-12-31T23:59:59.999Z"}, "runAt"),  # near the end of year 9999
    ({"runAt": "9999-12-31T23:59:59-14:00"}, "runAt"),  # past year 9999 once in UTC
    ({"payload": {"text": "a NUL \u0000 inside"}}, "payload"),  # jsonb refuses \u0000
    ({"payload": {"nul\u0000key": 1}}, "payload"),
    ({"payload": {"deep": [{"text": "\u0000"}]}}, "payload"),
]
# Valid run times at the edges of the allowed range, mixed into the good requests.
GOOD_RUN_AT = [None, None, "1970-01-01T00:00:00Z", "9998-12-31T23:59:59Z", "2031-05-01T12:00:00+14:00"]
REQUESTS_PER_ROUND = 200


async def test_one_tenants_poisoned_requests_fail_alone_in_batches_shared_with_another_tenant(
    api: Api, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Which jobs each enqueue statement carried, and whether it failed: observed on the
    # running app's queue, which the batcher calls (nothing is changed but recorded).
    statements: list[tuple[int, frozenset[str], bool]] = []
    queue = api.app.state.enqueuer.queue
    insert = queue.enqueue_returning

    async def observed(jobs: Sequence[NewJob]) -> list[Job | None]:
        channels = frozenset(job.channel_id for job in jobs)
        try:
            stored = await insert(jobs)
        except Exception:
            statements.append((len(jobs), channels, True))
            raise
        statements.append((len(jobs), channels, False))
        return stored

    monkeypatch.setattr(queue, "enqueue_returning", observed)

    limits = httpx.Limits(max_connections=REQUESTS_PER_ROUND)
    good_jobs: dict[str, dict[str, Any]] = {}
    statuses: list[int] = []
    async with api.client("alice", limits=limits) as alice, api.client("bob", limits=limits) as bob:

        async def bad(n: int) -> None:
            changes, field = POISON[n % len(POISON)]
            body = {"type": "t-count", "channelId": "a1", "payload": {"n": n}, **changes}
            r = await alice.post("/api/jobs", json=body)
            statuses.append(r.status_code)
            assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
            assert r.headers["content-type"] == PROBLEM, r.text
            problem = r.json()
            assert problem["status"] == r.status_code and problem.get("field") == field, (body, problem)
            assert problem["detail"], problem

        async def good(n: int, tag: str) -> None:
            body: dict[str, Any] = {"type": "t-count", "channelId": "b1", "payload": {"n": n, "tag": tag}}
            if run_at := GOOD_RUN_AT[n % len(GOOD_RUN_AT)]:
                body["runAt"] = run_at
            r = await bob.post("/api/jobs", json=body)
            statuses.append(r.status_code)
            assert r.status_code == 201, (body, r.status_code, r.text)
            job = r.json()["job"]
            assert job["channelId"] == "b1" and job["payload"] == body["payload"]
            good_jobs[job["id"]] = body["payload"]

        for _ in range(5):  # rounds, until a batch shared by both tenants has been seen
            tag = uuid.uuid4().hex
            await asyncio.gather(
                *(bad(n) if n % 2 else good(n, tag) for n in range(REQUESTS_PER_ROUND)),
            )
            if any(size > 1 and channels == {"a1", "b1"} for size, channels, _ in statements):
                break

    assert not [s for s in statuses if s >= 500]
    # The batcher really batched, and a batch mixed the tenants: the poisoned one failed
    # as a whole and was enqueued again one job at a time, so only the bad jobs failed.
    assert max(size for size, _, _ in statements) > 1, statements
    mixed = [(size, failed) for size, channels, failed in statements if size > 1 and channels == {"a1", "b1"}]
    assert mixed and all(failed for _, failed in mixed), mixed
    # Every valid job exists as sent, and the poisoned tenant wrote nothing.
    rows = await pool.fetch("SELECT id::text AS id, payload FROM pgcue.jobs WHERE channel_id = 'b1'")
    assert {r["id"]: r["payload"] for r in rows} == good_jobs
    assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs WHERE channel_id = 'a1'") == 0
    assert await pool.fetchval("SELECT count(*) FROM pgcue.job_events WHERE channel_id = 'a1'") == 0
