"""Signing in to the Jobs panel over plain HTTP, as a browser would (tests of the panel's
routes, auth and CSRF; the browser tests sign in through the form itself)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.helpers.apiserver import Api

CSRF = re.compile(r'<meta name="csrf-token" content="([^"]*)">')
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')


class PanelClient:
    """An httpx client holding a panel session cookie, and the page's CSRF token."""

    def __init__(self, client: httpx.AsyncClient, csrf: str) -> None:
        self.client = client
        self.csrf = csrf

    async def page(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.get(path, headers={"Accept": "text/html"}, **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        headers = {"X-CSRF-Token": self.csrf, "Origin": str(self.client.base_url).rstrip("/")}
        headers.update(kw.pop("headers", {}))
        return await self.client.post(path, json=json, headers=headers, **kw)

    async def aclose(self) -> None:
        await self.client.aclose()


async def sign_in(api: Api, who: str) -> PanelClient:
    client = httpx.AsyncClient(base_url=api.url, timeout=httpx.Timeout(20.0), follow_redirects=False)
    form = await client.get("/ui/login")
    assert form.status_code == 200, form.text
    token = LOGIN_TOKEN.search(form.text)
    assert token is not None
    done = await client.post(
        "/ui/login",
        data={"key": api.keys[who], "login_token": token.group(1)},
        headers={"Origin": api.url},
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/ui"
    page = await client.get("/ui", headers={"Accept": "text/html"})
    assert page.status_code == 200, page.text
    csrf = CSRF.search(page.text)
    assert csrf is not None and csrf.group(1)
    return PanelClient(client, csrf.group(1))
