"""The Jobs panel over plain HTTP: signing in and out, the session cookie and what ends it,
bad input to the panel's routes answered with a 4xx and never a 500, and the API fixes the
panel needs, made in the API for programs too: a pipeline run's startedAt and durationMs
cover the whole run and its artifact link works; parentId, includeChildren, waitingFor and
time filters on GET /api/jobs; recent without stage jobs; bulk actions; pauses for admin
keys; lastEventId for clients that cannot send headers; seed 002's proposals:updated."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from pgcue.core.config import Settings
from pgcue.core.models import NewJob
from pgcue.core.queue import Queue
from tests.conftest import Watcher, make_settings
from tests.helpers import rawhttp
from tests.helpers.apiserver import Api, SseReader
from tests.helpers.panel import LOGIN_TOKEN, sign_in

pytestmark = pytest.mark.timeout(90)

PROBLEM = "application/problem+json"
PIPELINES = ["--import", "tests.helpers.pipelinetypes"]
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def settings(database: str, tmp_path: Path) -> Settings:
    return make_settings(database, artifacts_dir=str(tmp_path / "artifacts"))


@pytest.fixture
def workers(spawn_worker: Any, settings: Settings) -> Any:
    async def start(*types: str) -> Any:
        env = {"PGCUE_ARTIFACTS_DIR": settings.artifacts_dir}
        return await spawn_worker(*types, extra=PIPELINES, env=env).started()

    return start


async def enqueue(api: Api, who: str, **body: Any) -> dict[str, Any]:
    async with api.client(who) as c:
        r = await c.post("/api/jobs", json=body)
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()["job"]
    return job


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- signing in and out ----------------------------------------------------------------------


async def test_sign_in_gives_an_http_only_strict_cookie_and_never_keeps_the_key(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as c:
        form = await c.get("/ui/login")
        token = LOGIN_TOKEN.search(form.text)
        assert token is not None
        done = await c.post("/ui/login", data={"key": api.keys["alice"], "login_token": token.group(1)})
    assert done.status_code == 303
    cookies = done.headers.get_list("set-cookie")
    session = next(h for h in cookies if h.startswith("pgcue_session="))
    assert "HttpOnly" in session and "samesite=strict" in session.lower() and "Path=/" in session
    assert api.keys["alice"] not in " ".join(cookies) and api.keys["alice"] not in done.headers["location"]


async def test_a_sign_in_form_from_elsewhere_or_a_wrong_key_starts_no_session(api: Api, pool: asyncpg.Pool) -> None:
    async with httpx.AsyncClient(base_url=api.url) as c:
        forged = await c.post("/ui/login", data={"key": api.keys["alice"], "login_token": "guessed"})
        assert forged.status_code == 403 and "pgcue_session=" not in forged.headers.get("set-cookie", "")
        form = await c.get("/ui/login")
        token = LOGIN_TOKEN.search(form.text)
        assert token is not None
        wrong = await c.post("/ui/login", data={"key": "pgcue_nope", "login_token": token.group(1)})
        assert wrong.status_code == 401 and "not a valid API key" in wrong.text
        json_body = await c.post("/ui/login", json={"key": api.keys["alice"]})
        assert json_body.status_code == 415
    assert await pool.fetchval("SELECT count(*) FROM pgcue.sessions") == 0


async def test_signing_out_or_revoking_the_key_ends_the_session(api: Api, pool: asyncpg.Pool, queue: Queue) -> None:
    first = await sign_in(api, "alice")
    second = await sign_in(api, "alice")
    try:
        out = await first.post("/ui/logout")
        assert out.status_code == 200
        assert (await first.client.get("/api/jobs")).status_code == 401  # this process forgot it at once
        assert (await second.client.get("/api/jobs")).status_code == 200  # the other sign-in is its own
        key_id = await pool.fetchval("SELECT id FROM pgcue.api_keys WHERE user_id = 'alice'")
        await queue.keys.revoke(key_id)
        deadline = time.monotonic() + 5
        while (await second.client.get("/api/jobs")).status_code != 401:  # within the 2 s cache
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
    finally:
        await first.aclose()
        await second.aclose()


async def test_an_expired_session_is_refused(api: Api, queue: Queue, pool: asyncpg.Pool) -> None:
    key_id = await pool.fetchval("SELECT id FROM pgcue.api_keys WHERE user_id = 'bob'")
    token, _ = await queue.sessions.create(key_id, 0.2)
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient(base_url=api.url, cookies={"pgcue_session": token}) as c:
        r = await c.get("/api/jobs")
    assert r.status_code == 401 and "session has ended" in r.json()["detail"]


# --- bad input: a 4xx, never a 500 ------------------------------------------------------------

HOSTILE_PAGES = [
    "/ui?channelId=%00",
    "/ui?channelId=" + "x" * 300,
    "/ui?channelId=b1",
    "/ui?state=bogus",
    "/ui?state=%00",
    "/ui?since=9y",
    "/ui?type=" + "t" * 100,
    "/ui?type=%ED%A0%80",
    "/ui?cursor=not-a-cursor",
    "/ui?cursor=" + "A" * 150,
    "/ui?q=xyz",
    "/ui?q=" + "0" * 61,
    "/ui?q=%00",
    "/ui/jobs/not-a-uuid",
    "/ui/jobs/%00",
    "/ui/jobs/" + "9" * 5000,
]
HOSTILE_FRAGMENTS = [
    "/ui/fragments/rows?ids=" + ",".join(["nope"] * 500),
    "/ui/fragments/rows?ids=%00",
    "/ui/fragments/rows?ids=" + "a" * 5000,
    "/ui/fragments/detail/not-a-uuid",
    f"/ui/fragments/detail/{uuid.uuid4()}",
    "/ui/fragments/summary?channelId=b1",
    "/ui/fragments/summary?state=nope",
]


async def test_hostile_input_to_the_panel_is_a_4xx_never_a_500(api: Api) -> None:
    panel = await sign_in(api, "alice")
    try:
        for path in HOSTILE_PAGES:
            r = await panel.page(path)
            assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:300])
            assert r.headers["content-type"].startswith("text/html"), path
            assert "<h1>" in r.text and "Internal" not in r.text, path
        for path in HOSTILE_FRAGMENTS:
            r = await panel.page(path)
            assert r.status_code < 500, (path, r.status_code, r.text[:300])
            if r.status_code >= 400:
                assert r.headers["content-type"].startswith(PROBLEM), path
        # Bodies PostgreSQL or a parser would choke on, to the routes that read one.
        for body, ctype in (
            (b"key=%ff%fe&login_token=x", "application/x-www-form-urlencoded"),
            (b"\xff\xfe\x00", "application/x-www-form-urlencoded"),
            (b"key=" + b"k" * 500_000, "application/x-www-form-urlencoded"),
            (b"{}", "application/json"),
        ):
            r = await panel.client.post("/ui/login", content=body, headers={"content-type": ctype})
            assert 400 <= r.status_code < 500, (body[:20], r.status_code)
        for body in (
            {"action": "retry"},
            {"action": "explode", "channelId": "a1"},
            {"action": "retry", "channelId": "\x00"},
        ):
            r = await panel.post("/api/jobs/bulk", json=body)
            assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith(PROBLEM), (body, r.text)
        port = int(api.url.rsplit(":", 1)[1])
        auth = [(b"Accept", b"text/html"), (b"Authorization", b"Bearer " + api.keys["alice"].encode())]
        for target in (b"/ui?channelId=a1&q=%C0%AF", b"/ui?channelId=a1&type=%FF", b"/ui/jobs/%FF%FE"):
            raw = await rawhttp.request(port, "GET", target, headers=auth)
            assert 400 <= raw.status < 500, (target, raw)
    finally:
        await panel.aclose()


async def test_another_users_job_page_is_the_missing_job_page_byte_for_byte(api: Api) -> None:
    theirs = await enqueue(api, "bob", type="t-count", channelId="b1")
    panel = await sign_in(api, "alice")
    try:
        other = await panel.page(f"/ui/jobs/{theirs['id']}")
        missing = await panel.page(f"/ui/jobs/{uuid.uuid4()}")
        assert other.status_code == missing.status_code == 404
        assert other.text == missing.text and theirs["id"] not in other.text
        detail = await panel.page(f"/ui/fragments/detail/{theirs['id']}")
        assert detail.status_code == 404
        rows = await panel.page(f"/ui/fragments/rows?channelId=a1&ids={theirs['id']}")
        assert rows.status_code == 200 and 'data-parent=""' in rows.text and "t-count" not in rows.text
    finally:
        await panel.aclose()


# --- what the API tells of pipelines ---------------------------------------------------------


async def test_a_runs_started_at_and_duration_cover_the_whole_run_and_its_artifact_link_works(
    api: Api, workers: Any, watcher: Watcher, pool: asyncpg.Pool
) -> None:
    await workers("orchestrate", "p-work", "p-file")
    run = await enqueue(api, "carol", type="orchestrate", channelId="c1", payload={"pipeline": "t-artifact"})
    await watcher.states([uuid.UUID(run["id"])], {"completed"}, timeout=40)
    async with api.client("carol") as c:
        done = (await c.get(f"/api/jobs/{run['id']}")).json()["job"]
        children = (await c.get("/api/jobs", params={"parentId": run["id"]})).json()["jobs"]
        artifact = await c.get(f"/api/jobs/{run['id']}/artifact")
    claims = await pool.fetch(
        "SELECT created_at FROM pgcue.job_events WHERE job_id = $1 AND kind = 'job:status' "
        "AND data->>'state' = 'running' ORDER BY id",
        uuid.UUID(run["id"]),
    )
    assert len(claims) >= 3  # it parked for each stage and was claimed again
    assert len(children) == 2 and all(c["parentId"] == run["id"] for c in children)
    started, finished = at(done["startedAt"]), at(done["completedAt"])
    assert started <= claims[0]["created_at"] + timedelta(milliseconds=1)  # its first start, not its last
    assert started < min(at(c["createdAt"]) for c in children)
    assert done["durationMs"] == pytest.approx((finished - started).total_seconds() * 1000, abs=1)
    assert done["resultPath"].startswith(next(c["id"] for c in children if c["type"] == "p-file"))
    assert artifact.status_code == 200 and artifact.text == "notes on draft draft 1\n"
    assert artifact.headers["x-content-type-options"] == "nosniff"
    async with api.client("alice") as c:
        assert (await c.get(f"/api/jobs/{run['id']}/artifact")).status_code == 404  # not alice's


async def test_lists_filter_by_run_children_waiting_and_time_and_recent_leaves_stage_jobs_out(
    api: Api, workers: Any, watcher: Watcher
) -> None:
    await workers("orchestrate", "p-work")
    lone = await enqueue(api, "carol", type="p-work", channelId="c1")
    run = await enqueue(api, "carol", type="orchestrate", channelId="c1", payload={"pipeline": "t-approve"})
    async with api.client("carol") as c:
        deadline = time.monotonic() + 30
        while True:
            waiting = (await c.get("/api/jobs", params={"channelId": "c1", "waitingFor": "approval"})).json()["jobs"]
            if waiting:
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        assert [j["id"] for j in waiting] == [run["id"]] and waiting[0]["waitingFor"] == "approval"
        own = (await c.get("/api/jobs", params={"channelId": "c1", "includeChildren": "false"})).json()["jobs"]
        assert {j["id"] for j in own} == {run["id"], lone["id"]}
        everything = (await c.get("/api/jobs", params={"channelId": "c1"})).json()["jobs"]
        children = (await c.get("/api/jobs", params={"parentId": run["id"]})).json()["jobs"]
        assert len(children) == 1 and {j["id"] for j in everything} == {run["id"], lone["id"], children[0]["id"]}
        later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        assert (await c.get("/api/jobs", params={"channelId": "c1", "createdAfter": later})).json()["jobs"] == []
        before = (await c.get("/api/jobs", params={"channelId": "c1", "createdBefore": run["createdAt"]})).json()
        assert [j["id"] for j in before["jobs"]] == [lone["id"]]
        for params, field in (
            ({"parentId": "nope"}, "parentId"),
            ({"waitingFor": "godot"}, "waitingFor"),
            ({"createdAfter": "yesterday"}, "createdAfter"),
            ({"createdBefore": "0001-01-01T00:00:00Z"}, "createdBefore"),
        ):
            bad = await c.get("/api/jobs", params={"channelId": "c1", **params})
            assert bad.status_code == 400 and bad.json()["field"] == field, (params, bad.text)
        r = await c.post(f"/api/jobs/{run['id']}/resume", json={"decision": "approve"})
        assert r.status_code == 200
    await watcher.states([uuid.UUID(run["id"]), uuid.UUID(lone["id"])], {"completed"}, timeout=30)
    async with api.client("carol") as c:
        recent = (await c.get("/api/jobs/recent", params={"channelId": "c1"})).json()["jobs"]
        assert {j["id"] for j in recent} == {run["id"], lone["id"]}  # the run, not its stage jobs
        recent_all = (await c.get("/api/jobs/recent", params={"channelId": "c1", "includeChildren": "true"})).json()
        assert len(recent_all["jobs"]) == 4
        stages = (await c.get(f"/api/jobs/{run['id']}/stages")).json()["stages"]
    feedback = [f for s in stages for f in s["feedback"]]
    assert feedback and all(ISO_MS.match(f["at"]) for f in feedback)  # the API's one time format


# --- bulk actions ----------------------------------------------------------------------------


async def test_a_bulk_action_counts_first_then_goes_through_every_match_and_leaves_newer_jobs_alone(
    api: Api, queue: Queue, pool: asyncpg.Pool
) -> None:
    await queue.enqueue_many([NewJob(type="t-count", channel_id="a1", owner_id="alice") for _ in range(23)])
    await queue.enqueue_many([NewJob(type="t-flaky", channel_id="a1", owner_id="alice") for _ in range(4)])
    await queue.enqueue_many([NewJob(type="t-count", channel_id="a2", owner_id="alice") for _ in range(3)])
    async with api.client("alice") as c:
        count = await c.post(
            "/api/jobs/bulk", json={"action": "cancel", "channelId": "a1", "type": "t-count", "dryRun": True}
        )
        assert count.status_code == 200, count.text
        counted = count.json()
        assert counted["matched"] == 23 and counted["changed"] == 0 and not counted["capped"]
        await queue.enqueue_many([NewJob(type="t-count", channel_id="a1", owner_id="alice")])  # after the count
        changed, cursor, calls = 0, None, 0
        while True:
            body = {
                "action": "cancel",
                "channelId": "a1",
                "type": "t-count",
                "createdBefore": counted["asOf"],
                "limit": 10,
            }
            if cursor:
                body["cursor"] = cursor
            step = (await c.post("/api/jobs/bulk", json=body)).json()
            changed += step["changed"]
            calls += 1
            cursor = step["nextCursor"]
            if not cursor:
                break
        assert changed == 23 and calls == 3
        rows = await pool.fetch("SELECT channel_id, type, state, count(*) AS n FROM pgcue.jobs GROUP BY 1, 2, 3")
        assert {(r["channel_id"], r["type"], r["state"]): r["n"] for r in rows} == {
            ("a1", "t-count", "cancelled"): 23,
            ("a1", "t-count", "queued"): 1,  # enqueued after the confirmation's count
            ("a1", "t-flaky", "queued"): 4,
            ("a2", "t-count", "queued"): 3,
        }
        retried = (
            await c.post("/api/jobs/bulk", json={"action": "retry", "channelId": "a1", "state": "cancelled"})
        ).json()
        assert retried["changed"] == 23
        refused = await c.post("/api/jobs/bulk", json={"action": "retry", "channelId": "a1", "state": "queued"})
        assert refused.status_code == 400 and refused.json()["field"] == "state"
        theirs = await c.post("/api/jobs/bulk", json={"action": "delete", "channelId": "b1", "dryRun": True})
        assert theirs.status_code == 404
    async with api.client("bob") as c:
        mine = await c.post("/api/jobs/bulk", json={"action": "cancel", "channelId": "a1"})
        assert mine.status_code == 404  # another user's channel: not found, and nothing changed
    assert await pool.fetchval("SELECT count(*) FROM pgcue.jobs WHERE state = 'cancelled'") == 0


# --- pauses, streams, proposals --------------------------------------------------------------


async def test_pausing_a_type_or_a_channel_is_for_admin_keys(api: Api, pool: asyncpg.Pool) -> None:
    async with api.client("alice") as alice:
        r = await alice.post("/api/types/t-count/pause")
        assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)
        assert (await alice.post("/api/channels/a1/pause")).status_code == 403
    async with api.client("admin") as admin:
        r = await admin.post("/api/types/t-count/pause")
        assert r.status_code == 200 and r.json() == {"paused": True, "type": "t-count", "channelId": None}
        assert await pool.fetchval("SELECT paused FROM pgcue.job_types WHERE name = 't-count'") is True
        assert (await admin.post("/api/types/t-count/resume")).json()["paused"] is False
        assert (await admin.post("/api/types/no-such-type/pause")).status_code == 404
        assert (await admin.post("/api/channels/a1/pause")).json() == {"paused": True, "type": None, "channelId": "a1"}
        assert (
            await pool.fetchval("SELECT reason FROM pgcue.paused_channels WHERE channel_id = 'a1'")
            == "paused by ops (API)"
        )
        assert (await admin.post("/api/channels/a1/resume")).json()["paused"] is False
        assert await pool.fetchval("SELECT count(*) FROM pgcue.paused_channels") == 0


async def test_a_stream_resumes_from_a_last_event_id_in_the_query_and_the_header_wins(api: Api) -> None:
    async with api.client("alice") as c:
        async with c.stream("GET", "/api/events", params={"channelId": "a1"}) as r:
            reader = SseReader(r)
            first = await enqueue(api, "alice", type="t-count", channelId="a1")
            got = await reader.until(lambda e: e.event == "job:status")
            cursor = got[-1].id
        second = await enqueue(api, "alice", type="t-count", channelId="a1")
        async with c.stream("GET", "/api/events", params={"channelId": "a1", "lastEventId": cursor}) as r:
            replay = await SseReader(r).until(lambda e: e.event == "job:status")
        assert [e.data["jobId"] for e in replay if e.data] == [second["id"]]
        async with c.stream(
            "GET",
            "/api/events",
            params={"channelId": "a1", "lastEventId": "0:1:1::"},
            headers={"Last-Event-ID": cursor},
        ) as r:
            header_wins = await SseReader(r).until(lambda e: e.event == "job:status")
        assert [e.data["jobId"] for e in header_wins if e.data] == [second["id"]]
        bad = await c.get("/api/events", params={"channelId": "a1", "lastEventId": "nope"})
        assert bad.status_code == 400 and bad.json()["field"] == "lastEventId"
        assert first["id"] != second["id"]


async def test_a_proposals_job_announces_its_new_result_on_its_channel(api: Api, workers: Any) -> None:
    await workers("proposals")
    async with api.client("carol") as c, c.stream("GET", "/api/events", params={"channelId": "c1"}) as r:
        reader = SseReader(r)
        job = await enqueue(api, "carol", type="proposals", channelId="c1", payload={"brief": "tides", "count": 3})
        events = await reader.until(lambda e: e.event == "proposals:updated", timeout=40)
    status = [e for e in events if e.event == "job:status" and e.data and e.data["state"] == "completed"]
    announced = events[-1].data
    assert status and announced is not None
    assert announced["jobId"] == job["id"] and announced["type"] == "proposals" and announced["channelId"] == "c1"
    assert events.index(status[0]) < len(events) - 1  # after the result it announces is stored
