"""Authentication is applied to the whole app: every route but the public ones refuses a
request without a key, and a new route is private unless its path is added to PUBLIC. The
panel's session cookie is accepted by every private route, like a key, and changes nothing
without its CSRF token."""

from __future__ import annotations

import re

import pytest

from pgcue.api.auth import PUBLIC, SAFE_METHODS, is_public
from tests.helpers.apiserver import Api
from tests.helpers.panel import sign_in

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
    assert PUBLIC == ("/healthz", "/readyz", "/metrics", "/schema", "/ui/login", "/ui/static")
    assert is_public("/schema/openapi.json") and not is_public("/schemata") and not is_public("/api/jobs")
    assert is_public("/ui/static/panel.js") and not is_public("/ui") and not is_public("/ui/loginx")
    assert not is_public("/") and not is_public("/ui/logout") and not is_public("/ui/jobs/x")


async def test_an_anonymous_browser_is_sent_to_sign_in_and_a_program_gets_401(api: Api) -> None:
    async with api.client() as anonymous:
        for path in ("/", "/ui", "/ui/operator", f"/ui/jobs/{SAMPLE['job_id']}"):
            page = await anonymous.get(path, headers={"Accept": "text/html,application/xhtml+xml"})
            assert page.status_code == 303 and page.headers["location"] == "/ui/login", path
            program = await anonymous.get(path)
            assert program.status_code == 401 and program.headers["content-type"].startswith(PROBLEM), path
        fragment = await anonymous.get("/ui/fragments/summary", headers={"Accept": "text/html"})
        assert fragment.status_code == 401  # what panel.js fetches is never a redirect
        for path in ("/ui/login", "/ui/static/panel.js", "/ui/static/panel.css"):
            assert (await anonymous.get(path)).status_code == 200, path


async def test_a_panel_session_opens_every_private_route_but_changes_nothing_without_its_csrf_token(api: Api) -> None:
    panel = await sign_in(api, "alice")
    try:
        routes = [(m, p) for m, p in _routes(api) if not is_public(p) and "events" not in p]
        for method, path in routes:
            r = await panel.client.request(method, path, json={}, headers={"Accept": "application/json"}, timeout=5)
            assert r.status_code != 401, (method, path, r.text)
            if method not in SAFE_METHODS:
                assert r.status_code == 403 and r.json()["type"].endswith("/csrf"), (method, path, r.text)
        for method, path in routes:
            if method in SAFE_METHODS or path == "/ui/logout":
                continue
            r = await panel.client.request(
                method, path, json={}, headers={"X-CSRF-Token": panel.csrf, "Accept": "application/json"}, timeout=5
            )
            assert r.status_code != 401 and not r.text.endswith('/csrf"}'), (method, path, r.text)
            assert "csrf" not in r.headers.get("content-type", "") and (
                r.status_code != 403 or not r.json()["type"].endswith("/csrf")
            ), (method, path, r.text)
        # From another origin the token does not help: the page's own origin only.
        evil = await panel.client.post(
            "/api/jobs",
            json={"type": "t-count", "channelId": "a1"},
            headers={"X-CSRF-Token": panel.csrf, "Origin": "https://evil.example"},
        )
        assert evil.status_code == 403
        wrong = await panel.client.post(
            "/api/jobs", json={"type": "t-count", "channelId": "a1"}, headers={"X-CSRF-Token": "x" + panel.csrf}
        )
        assert wrong.status_code == 403
        ok = await panel.post("/api/jobs", json={"type": "t-count", "channelId": "a1"})
        assert ok.status_code == 201, ok.text
    finally:
        await panel.aclose()


async def test_a_bearer_key_is_judged_alone_and_needs_no_csrf_token(api: Api) -> None:
    panel = await sign_in(api, "alice")
    try:
        r = await panel.client.post(
            "/api/jobs",
            json={"type": "t-count", "channelId": "b1"},
            headers={"Authorization": f"Bearer {api.keys['bob']}"},  # bob's key, alice's cookie
        )
        assert r.status_code == 201 and r.json()["job"]["channelId"] == "b1"
        bad = await panel.client.get("/api/jobs", headers={"Authorization": "Bearer pgcue_not-a-key"})
        assert bad.status_code == 401  # a bad key is not rescued by a good cookie
    finally:
        await panel.aclose()
