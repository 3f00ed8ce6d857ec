"""Unique jobs through the HTTP API: the three conflict policies."""

from __future__ import annotations

import pytest

from tests.helpers.apiserver import Api

pytestmark = pytest.mark.timeout(60)


async def test_unique_key_policies_over_http(api: Api) -> None:
    body = {"type": "echo", "channelId": "a1", "uniqueKey": "ep-1", "payload": {"v": 1}}
    async with api.client("alice") as c:
        first = (await c.post("/api/jobs", json=body)).json()["job"]
        again = await c.post("/api/jobs", json={**body, "payload": {"v": 2}})
        replaced = await c.post("/api/jobs", json={**body, "payload": {"v": 3}, "onConflict": "replace"})
        rejected = await c.post("/api/jobs", json={**body, "onConflict": "reject"})
        bad = await c.post("/api/jobs", json={**body, "onConflict": "maybe"})
    assert again.status_code == 201 and again.json()["job"]["id"] == first["id"]
    assert again.json()["job"]["payload"] == {"v": 1}
    assert replaced.json()["job"]["id"] == first["id"] and replaced.json()["job"]["payload"] == {"v": 3}
    assert rejected.status_code == 409 and rejected.headers["content-type"] == "application/problem+json"
    assert "already queued or running" in rejected.json()["detail"]
    assert bad.status_code == 400 and "onConflict" in bad.json()["detail"]
