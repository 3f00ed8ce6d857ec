"""A hostile tenant learns nothing of another's jobs: not through a unique key's conflict
paths, not through /api/stats, not through an idempotency key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.helpers.apiserver import Api

pytestmark = pytest.mark.timeout(60)
LATER = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
SECRET = "BOB-SECRET-7f3a"


async def _bobs_job(api: Api, key: str) -> dict[str, Any]:
    async with api.client("bob") as c:
        r = await c.post(
            "/api/jobs",
            json={"type": "sleep", "channelId": "b1", "uniqueKey": key, "runAt": LATER, "payload": {"secret": SECRET}},
        )
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()["job"]
    return job


@pytest.mark.parametrize("policy", ["return", "replace", "reject"])
async def test_another_tenants_unique_key_is_not_theirs_to_meet(api: Api, pool: asyncpg.Pool, policy: str) -> None:
    bob = await _bobs_job(api, f"episode-{policy}")
    body = {
        "type": "sleep",
        "channelId": "a1",
        "uniqueKey": f"episode-{policy}",
        "onConflict": policy,
        "runAt": "2099-01-01T00:00:00Z",
        "priority": -1000,
        "payload": {"mine": True},
    }
    async with api.client("alice") as c:
        first = await c.post("/api/jobs", json=body)
        second = await c.post("/api/jobs", json=body)  # now alice's own key is taken
    # Alice's first enqueue makes her own job: the key is hers in her channel.
    assert first.status_code == 201, first.text
    mine = first.json()["job"]
    assert mine["id"] != bob["id"] and mine["channelId"] == "a1" and mine["payload"] == {"mine": True}
    assert SECRET not in first.text and bob["id"] not in first.text
    # A second one meets her own job only.
    assert bob["id"] not in second.text and SECRET not in second.text
    if policy == "reject":
        assert second.status_code == 409 and mine["id"] in second.json()["detail"]
    else:
        assert second.status_code == 201 and second.json()["job"]["id"] == mine["id"]
    # Bob's job is untouched: payload, priority, run time.
    row = await pool.fetchrow("SELECT payload, priority, run_at, state FROM pgcue.jobs WHERE id = $1::uuid", bob["id"])
    assert row["payload"] == {"secret": SECRET} and row["priority"] == 0 and row["state"] == "queued"
    assert row["run_at"] < datetime(2098, 1, 1, tzinfo=UTC)


async def test_bob_still_gets_his_own_conflicts(api: Api) -> None:
    bob = await _bobs_job(api, "shared-name")
    async with api.client("alice") as c:
        assert (
            await c.post("/api/jobs", json={"type": "sleep", "channelId": "a1", "uniqueKey": "shared-name"})
        ).status_code == 201
    async with api.client("bob") as c:
        again = await c.post("/api/jobs", json={"type": "sleep", "channelId": "b1", "uniqueKey": "shared-name"})
    assert again.status_code == 201 and again.json()["job"]["id"] == bob["id"]


async def test_stats_show_a_tenant_its_own_channels_only(api: Api, pool: asyncpg.Pool) -> None:
    await _bobs_job(api, "stats-1")
    async with api.client("bob") as c:
        for _ in range(3):
            assert (
                await c.post("/api/jobs", json={"type": "echo", "channelId": "b1", "runAt": LATER})
            ).status_code == 201
    async with api.client("alice") as alice, api.client("admin") as admin:
        mine = (await alice.get("/api/stats")).json()
        fleet = (await admin.get("/api/stats")).json()
    assert mine["depth"] == []  # alice has no jobs
    assert mine["workersRecent"] is None
    assert all(p["queued"] == 0 and p["running"] == 0 for p in mine["policies"])
    queued = {p["type"]: p["queued"] for p in fleet["policies"]}
    assert queued["sleep"] == 1 and queued["echo"] == 3
    assert {(d["type"], d["jobs"]) for d in fleet["depth"]} >= {("sleep", 1), ("echo", 3)}


async def test_an_idempotency_key_is_per_tenant(api: Api) -> None:
    async with api.client("bob") as c:
        bob = (
            await c.post("/api/jobs", json={"type": "echo", "channelId": "b1"}, headers={"Idempotency-Key": "k1"})
        ).json()["job"]
    async with api.client("alice") as c:
        r = await c.post("/api/jobs", json={"type": "echo", "channelId": "a1"}, headers={"Idempotency-Key": "k1"})
        again = await c.post(
            "/api/jobs",
            json={"type": "echo", "channelId": "a1", "payload": {"x": 1}},
            headers={"Idempotency-Key": "k1"},
        )
    assert r.status_code == 201 and r.json()["job"]["id"] != bob["id"]
    assert again.status_code == 409 and bob["id"] not in again.text
