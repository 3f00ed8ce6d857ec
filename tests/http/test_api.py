"""The HTTP API over real HTTP (uvicorn on loopback), real PostgreSQL, real workers."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from typing import Any

import asyncpg
import pytest

from pgcue.core.config import Settings
from tests.conftest import ROOT, dsn_for, valid_payload
from tests.helpers.apiserver import Api, SseReader, serve

pytestmark = pytest.mark.timeout(60)

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PROBLEM = "application/problem+json"


async def counts(pool: asyncpg.Pool) -> tuple[int, int]:
    row = await pool.fetchrow("SELECT (SELECT count(*) FROM pgcue.jobs) j, (SELECT count(*) FROM pgcue.job_events) e")
    assert row is not None
    return row["j"], row["e"]


async def enqueue(api: Api, who: str, **body: Any) -> dict[str, Any]:
    body.setdefault("payload", valid_payload(body["type"]))
    async with api.client(who) as c:
        r = await c.post("/api/jobs", json=body)
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()["job"]
    return job


async def test_full_life_of_a_job_through_api_and_stream(api: Api, spawn_worker: Any) -> None:
    await spawn_worker("t-slow").started()
    job = await enqueue(api, "alice", type="t-slow", channelId="a1", payload={"steps": 3, "step": 0.05})
    assert job["state"] == "queued" and ISO_MS.match(job["createdAt"]) and job["startedAt"] is None
    async with api.client("alice") as c, c.stream("GET", f"/api/jobs/{job['id']}/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = await SseReader(r).rest()
    kinds = [(e.event, (e.data or {}).get("state")) for e in events]
    assert kinds[0] == ("job:status", "queued")
    assert kinds[1] == ("job:status", "running")
    assert kinds[-1] == ("job:status", "completed")
    middle = {k for k, _ in kinds[2:-1]}
    assert {"job:progress", "job:output"} <= middle, kinds
    ids = [e.id for e in events]
    assert all(ids) and len(set(ids)) == len(ids)
    assert [e.data["eventId"] for e in events if e.data] == sorted(e.data["eventId"] for e in events if e.data)
    out = "".join(e.data["text"] for e in events if e.event == "job:output" and e.data)
    assert out == "line 0\nline 1\nline 2\n"

    async with api.client("alice") as c:
        got = (await c.get(f"/api/jobs/{job['id']}")).json()["job"]
        recent = (await c.get("/api/jobs/recent", params={"channelId": "a1"})).json()["jobs"]
        stats = (await c.get("/api/stats")).json()
    assert got["state"] == "completed" and got["resultPath"] == f"/artifacts/{job['id']}.txt"
    assert got["result"] == {"steps": 3} and got["errorMessage"] is None and got["cancelRequested"] is False
    for key in ("createdAt", "startedAt", "completedAt"):
        assert ISO_MS.match(got[key]), got[key]
    assert isinstance(got["durationMs"], int) and got["durationMs"] >= 100
    assert [j["id"] for j in recent] == [job["id"]]
    assert any(r["type"] == "t-slow" and r["state"] == "completed" and r["jobs"] == 1 for r in stats["depth"])
    assert stats["workersRecent"] is None  # the fleet's workers are for admin keys only
    async with api.client("admin") as c:
        assert (await c.get("/api/stats")).json()["workersRecent"] >= 1


async def test_cancel_running_job_is_seen_on_stream(api: Api, spawn_worker: Any) -> None:
    await spawn_worker("t-slow").started()
    job = await enqueue(api, "alice", type="t-slow", channelId="a1", payload={"steps": 400, "step": 0.05})
    async with api.client("alice") as c, c.stream("GET", f"/api/jobs/{job['id']}/events") as r:
        reader = SseReader(r)
        await reader.until(lambda e: e.event == "job:output")
        resp = await c.post(f"/api/jobs/{job['id']}/cancel")
        assert resp.status_code == 200 and resp.json()["job"]["cancelRequested"] is True
        rest = await reader.rest()
    assert rest[-1].event == "job:status" and rest[-1].data and rest[-1].data["state"] == "cancelled"
    async with api.client("alice") as c:
        got = (await c.get(f"/api/jobs/{job['id']}")).json()["job"]
        again = await c.post(f"/api/jobs/{job['id']}/cancel")
    assert got["state"] == "cancelled" and got["errorMessage"] == "Job cancelled by user request"
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM


async def test_isolation_between_users(api: Api, pool: asyncpg.Pool) -> None:
    mine = await enqueue(api, "alice", type="echo", channelId="a1")
    jid = mine["id"]
    async with api.client("bob") as bob:
        for method, path in [
            ("GET", f"/api/jobs/{jid}"),
            ("POST", f"/api/jobs/{jid}/cancel"),
            ("POST", f"/api/jobs/{jid}/retry"),
            ("DELETE", f"/api/jobs/{jid}"),
            ("GET", f"/api/jobs/{jid}/events"),
            ("GET", "/api/jobs?channelId=a1"),
            ("GET", "/api/jobs/recent?channelId=a1"),
            ("GET", "/api/events?channelId=a1"),
            ("POST", "/api/channels/a1/clear"),
        ]:
            r = await bob.request(method, path)
            assert r.status_code == 404, (method, path, r.text)
            assert r.headers["content-type"] == PROBLEM
        r = await bob.post("/api/jobs", json={"type": "echo", "channelId": "a1"})
        assert r.status_code == 404
        assert (await bob.get("/api/jobs")).json()["jobs"] == []
        assert (await bob.get("/api/stats")).json()["depth"] == []
        # bob's stream of all his channels: alice's event never shows, his own does.
        async with bob.stream("GET", "/api/events") as stream:
            reader = SseReader(stream)
            await enqueue(api, "alice", type="echo", channelId="a2")
            own = await enqueue(api, "bob", type="echo", channelId="b1")
            first = await reader.next()
            assert first is not None and first.data is not None
            assert first.data["jobId"] == own["id"] and first.data["channelId"] == "b1"
    async with api.client("admin") as admin:
        assert (await admin.get(f"/api/jobs/{jid}")).status_code == 200
        seen = {j["id"] for j in (await admin.get("/api/jobs")).json()["jobs"]}
        assert {jid, own["id"]} <= seen
    assert (await pool.fetchval("SELECT state FROM pgcue.jobs WHERE id = $1", mine["id"])) == "queued"


async def test_plan_gating(api: Api, pool: asyncpg.Pool) -> None:
    before = await counts(pool)
    async with api.client("alice") as c:
        r = await c.post("/api/jobs", json={"type": "render", "channelId": "a1"})
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["requiredPlan"] == "paid" and "paid plan" in body["detail"] and "free" in body["detail"]
    assert await counts(pool) == before
    for t in ("tts", "resource-download", "echo"):
        await enqueue(api, "alice", type=t, channelId="a1")
    for t in ("orchestrate", "idea", "proposals", "fact-check", "humanize", "discover", "render"):
        await enqueue(api, "carol", type=t, channelId="c1")
        async with api.client("bob") as c:
            assert (await c.post("/api/jobs", json={"type": t, "channelId": "b1"})).status_code == 403


async def test_idempotency_key_returns_first_job(api: Api, pool: asyncpg.Pool) -> None:
    body = {"type": "echo", "channelId": "a1", "payload": {"n": 1}}
    async with api.client("alice") as c:
        a = await c.post("/api/jobs", json=body, headers={"Idempotency-Key": "k1"})
        b = await c.post("/api/jobs", json=body, headers={"Idempotency-Key": "k1"})
        before = await counts(pool)
        other = await c.post("/api/jobs", json={**body, "payload": {"n": 2}}, headers={"Idempotency-Key": "k1"})
    assert a.json()["job"]["id"] == b.json()["job"]["id"]
    assert other.status_code == 409 and other.headers["content-type"] == PROBLEM
    assert await counts(pool) == before == (1, 1)


async def test_list_is_keyset_paginated_newest_first(api: Api) -> None:
    ids = [(await enqueue(api, "alice", type="echo", channelId="a1", payload={"i": i}))["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    async with api.client("alice") as c:
        for _ in range(5):
            params: dict[str, Any] = {"channelId": "a1", "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await c.get("/api/jobs", params=params)).json()
            seen += [j["id"] for j in page["jobs"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert seen == list(reversed(ids))
        queued = (await c.get("/api/jobs", params={"state": "submitted"})).json()["jobs"]
        assert len(queued) == 5
        assert (await c.get("/api/jobs", params={"limit": 1000})).status_code == 400


async def test_documented_errors_are_problems_and_write_nothing(api: Api, pool: asyncpg.Pool) -> None:
    job = await enqueue(api, "alice", type="echo", channelId="a1")
    async with api.client("alice") as c:
        await c.post(f"/api/jobs/{job['id']}/cancel")
    before = await counts(pool)
    big = {"type": "echo", "channelId": "a1", "payload": {"x": "a" * (1024 * 1024 + 10)}}
    cases: list[tuple[str | None, str, str, dict[str, Any], int, str]] = [
        ("alice", "POST", "/api/jobs", {"json": {"type": "no-such", "channelId": "a1"}}, 422, "unknown-job-type"),
        ("alice", "POST", "/api/jobs", {"content": b'{"type": "echo",'}, 400, "bad-json"),
        ("alice", "POST", "/api/jobs", {"json": {"type": "echo", "channelId": "a1", "extra": 1}}, 400, "unknown-field"),
        ("alice", "POST", "/api/jobs", {"json": {"type": "echo", "channelId": "a1", "priority": "x"}}, 400, ""),
        ("alice", "POST", "/api/jobs", {"json": {"type": "echo", "channelId": "a1", "priority": 5000}}, 400, ""),
        ("alice", "POST", "/api/jobs", {"json": big}, 413, "body-too-large"),
        ("alice", "POST", "/api/jobs", {"json": {"type": "render", "channelId": "a1"}}, 403, "plan-required"),
        ("alice", "POST", "/api/jobs", {"json": {"type": "echo", "channelId": "zz"}}, 404, "not-found"),
        ("alice", "POST", f"/api/jobs/{job['id']}/cancel", {}, 409, "invalid-transition"),
        ("alice", "POST", "/api/jobs/00000000-0000-0000-0000-000000000000/cancel", {}, 404, "not-found"),
        ("alice", "GET", "/api/jobs", {"params": {"cursor": "!!"}}, 400, "bad-cursor"),
        (
            "alice",
            "GET",
            f"/api/jobs/{job['id']}/events",
            {"headers": {"Last-Event-ID": "nonsense"}},
            400,
            "bad-last-event-id",
        ),
        (None, "POST", "/api/jobs", {"json": {"type": "echo", "channelId": "a1"}}, 401, "unauthenticated"),
        (None, "GET", "/api/jobs", {"headers": {"Authorization": "Bearer pgcue_wrong"}}, 401, "unauthenticated"),
        ("alice", "PATCH", "/api/jobs", {}, 405, "method-not-allowed"),
    ]
    for who, method, path, kw, status, kind in cases:
        async with api.client(who) as c:
            r = await c.request(method, path, **kw)
        assert r.status_code == status, (path, kw.keys(), r.status_code, r.text[:300])
        assert r.headers["content-type"] == PROBLEM, r.headers
        body = r.json()
        assert body["status"] == status and body["title"] and body["detail"], body
        assert body["type"].endswith("/" + kind) if kind else body["type"].startswith("https://")
    assert await counts(pool) == before


async def test_database_down_is_503(settings: Settings, template_db: str) -> None:
    from psycopg import sql as psql

    from tests.conftest import _admin, _drop

    name = f"pgcue_down_{id(settings) % 10**8}"
    with _admin() as conn:
        conn.execute(
            psql.SQL("CREATE DATABASE {} TEMPLATE {}").format(psql.Identifier(name), psql.Identifier(template_db))
        )
    try:
        down = settings.replace(database_url=dsn_for(name))
        async for running in serve(down):
            _drop(name)
            async with running.client() as c:
                r = await c.get("/api/jobs", headers={"Authorization": "Bearer pgcue_any"})
                ready = await c.get("/readyz")
                alive = await c.get("/healthz")
            assert r.status_code == 503 and r.headers["content-type"] == PROBLEM, r.text
            assert ready.status_code == 503 and alive.status_code == 200
    finally:
        _drop(name)


async def test_keys_cli(settings: Settings, api: Api) -> None:
    env = {"PGCUE_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "pgcue.cli", "keys", "create", "--user", "dave", "--plan", "paid", "--channel", "d1"]
    ok = await asyncio.to_thread(subprocess.run, cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    token = ok.stdout.strip()
    assert token.startswith("pgcue_")
    api.keys["dave"] = token
    await enqueue(api, "dave", type="render", channelId="d1")
    taken = [*cmd[:-1], "a1"]
    taken[taken.index("dave")] = "eve"
    bad = await asyncio.to_thread(subprocess.run, taken, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "another user" in bad.stderr


async def test_health_and_schema(api: Api) -> None:
    async with api.client() as c:
        assert (await c.get("/healthz")).json()["status"] == "ok"
        assert (await c.get("/readyz")).json()["status"] == "ready"
        schema = (await c.get("/schema/openapi.json")).json()
    paths = schema["paths"]
    for path in (
        "/api/jobs",
        "/api/jobs/recent",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/cancel",
        "/api/jobs/{job_id}/retry",
        "/api/jobs/{job_id}/events",
        "/api/events",
        "/api/channels/{channel_id}/clear",
        "/api/stats",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    post = paths["/api/jobs"]["post"]
    assert {"400", "401", "403", "404", "409", "413", "422", "503"} <= set(post["responses"])
    assert PROBLEM in post["responses"]["403"]["content"]
