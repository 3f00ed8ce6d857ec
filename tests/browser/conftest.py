"""A real browser for the Jobs panel's tests: Debian's chromium (/usr/bin/chromium,
installed by .ci/run), driven by Playwright from PyPI with no browser download of its
own. One browser per test run; each test gets fresh contexts (cookies, storage), signs
in through the panel's own form, and fails if the page logged an error to its console
or threw."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.apiserver import Api

CHROMIUM = os.environ.get("PGCUE_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install -y chromium (or set PGCUE_TEST_CHROMIUM)")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


@dataclass
class Tab:
    """A signed-in page, with what its console said."""

    page: Any
    context: Any
    console: list[tuple[str, str, str]] = field(default_factory=list)  # (type, text, url)
    errors: list[str] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)

    def expect_refused(self, path: str) -> None:
        """The test opens `path` expecting a 4xx page: the browser's console line saying the
        page's status is not an error of the panel's."""
        self.refused.add(path)

    def _expected(self, text: str, url: str) -> bool:
        if not text.startswith("Failed to load resource: the server responded with a status of 4"):
            return False
        path = "/" + url.split("://", 1)[-1].split("/", 1)[-1]
        return path in self.refused

    def problems(self) -> list[str]:
        return [
            f"console.{kind}: {text} ({url})"
            for kind, text, url in self.console
            if kind == "error" and not self._expected(text, url)
        ] + [f"page error: {e}" for e in self.errors]


async def open_tab(browser: Any, api: Api, who: str | None, viewport: dict[str, int] = DESKTOP) -> Tab:
    context = await browser.new_context(viewport=viewport, base_url=api.url)
    context.set_default_timeout(15_000)
    page = await context.new_page()
    tab = Tab(page, context)
    page.on("console", lambda msg: tab.console.append((msg.type, msg.text, (msg.location or {}).get("url", ""))))
    page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    if who is not None:
        await page.goto("/ui")
        assert page.url.endswith("/ui/login"), page.url  # an anonymous browser is sent to sign in
        await page.get_by_label("API key").fill(api.keys[who])
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url("**/ui")
    return tab


@pytest.fixture
async def tabs(browser: Any, api: Api) -> AsyncIterator[Callable[..., Awaitable[Tab]]]:
    """open(who, viewport=...) -> a signed-in Tab; every tab is checked for console errors
    at the end of the test."""
    opened: list[Tab] = []

    async def open_(who: str | None = "alice", viewport: dict[str, int] = DESKTOP) -> Tab:
        tab = await open_tab(browser, api, who, viewport)
        opened.append(tab)
        return tab

    yield open_
    problems = [p for tab in opened for p in tab.problems()]
    for tab in opened:
        await tab.context.close()
    assert not problems, problems


@pytest.fixture
def settings(database: str, tmp_path: Path) -> Any:
    """The test's settings, with an artifacts folder of its own (the API serves from it)."""
    from tests.conftest import make_settings

    return make_settings(database, artifacts_dir=str(tmp_path / "artifacts"))


@pytest.fixture
def worker(spawn_worker: Any, settings: Any) -> Callable[..., Awaitable[Any]]:
    """start(*types) -> a started `pgcue worker` for the types (the test types, the
    pipeline types, the studio's), writing artifacts where the API reads them."""

    async def start(*types: str) -> Any:
        extra = ["--import", "tests.helpers.pipelinetypes"]
        env = {"PGCUE_ARTIFACTS_DIR": settings.artifacts_dir}
        return await spawn_worker(*types, extra=extra, env=env).started()

    return start
