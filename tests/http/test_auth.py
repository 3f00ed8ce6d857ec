"""Authentication is applied to the whole app: every route but the public ones refuses a
request without a key, and a new route is private unless its path is added to PUBLIC."""

from __future__ import annotations

import re

import pytest

from pgcue.api.auth import PUBLIC, is_public
from tests.helpers.apiserver import Api

PROBLEM = "application/problem+json"
SAMPLE = {"job_id": "01a233b8-2894-7c30-9a6a-7a5aa317a626", "channel_id": "a1"}


def _routes(api: Api) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, with path parameters filled in."""
    out = []
    for route in api.app.routes:
        path = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: SAMPLE.get(m.group(1), "x"), route.path)
        for method in sorted(getattr(route, "methods", {"GET"}) - {"OPTIONS", "HEAD"}):
            out.append((method, path))
    return out


async def test_every_route_but_the_public_ones_refuses_a_missing_key(api: Api) -> None:
    routes = _routes(api)
    private = [(m, p) for m, p in routes if not is_public(p)]
    public = [(m, p) for m, p in routes if is_public(p)]
    assert len(private) >= 12, private  # the jobs API, stages, artifacts, streams: all of them
    assert {p for _, p in public} >= {"/healthz", "/readyz", "/metrics", "/schema/openapi.json"}
    async with api.client() as anonymous, api.client("alice") as alice:
        for method, path in private:
            r = await anonymous.request(method, path, json={})
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert r.headers["content-type"].startswith(PROBLEM) and r.headers["www-authenticate"].startswith("Bearer")
            bad = await anonymous.request(method, path, json={}, headers={"Authorization": "Bearer pgcue_not-a-key"})
            assert bad.status_code == 401, (method, path)
            # With a key the same request gets past authentication (whatever else it is).
            if "events" not in path:  # a stream would stay open
                ok = await alice.request(method, path, json={}, timeout=5)
                assert ok.status_code != 401, (method, path, ok.text)
        for path in ("/healthz", "/readyz", "/metrics", "/schema/openapi.json"):
            assert (await anonymous.get(path)).status_code == 200, path


@pytest.mark.parametrize("path", ["/HEALTHZ", "/healthzz", "/healthz/x", "/metricsx", "/schemax"])
async def test_a_path_that_only_looks_public_is_not(api: Api, path: str) -> None:
    async with api.client() as anonymous:
        r = await anonymous.get(path)
    assert r.status_code in (401, 404), (path, r.status_code)
    assert not (r.status_code == 200 and "jobs" in r.text)


def test_the_public_list_is_short_and_explicit() -> None:
    assert PUBLIC == ("/healthz", "/readyz", "/metrics", "/schema")
    assert is_public("/schema/openapi.json") and not is_public("/schemata") and not is_public("/api/jobs")
