"""The README's screenshots of the Jobs panel, taken from a real run by the browser tests'
own setup (tests/browser/conftest.py: Debian's chromium driven by Playwright):

    .venv/bin/python -m tests.helpers.screenshots            # writes docs/img/panel-*.png

It makes a scratch database (PGCUE_TEST_DSN's server), serves the real API on loopback,
starts real workers (tts, render, proposals, a pipeline, a download that fails), signs in
through the panel's form and photographs the user view, an expanded row, a pipeline run
waiting for approval, the operator view and a phone's view. Then it drops everything.
A real run lasts a minute, so the operator's chart of the last hour gets the hour before
it as rows written by SQL (finished jobs of another channel, `shorts`); everything else
on the pictures happened.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql as psql

from pgcue.core import db, migrate
from pgcue.core.queue import Queue
from pgcue.workers.runtime import registry
from tests.browser.conftest import ARGS, CHROMIUM, DESKTOP, PHONE
from tests.conftest import BASE_DSN, ROOT, dsn_for, make_settings
from tests.helpers.apiserver import Api, serve

OUT = ROOT / "docs" / "img"
CHANNEL = "demo"
SPEECH = (
    "Welcome back to the studio. Tonight's episode is about tides: why the sea breathes twice a day, "
    "and what the moon has to do with it."
)


def _workers(settings: Any, artifacts: str) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "PGCUE_DATABASE_URL": settings.database_url,
        "PGCUE_ARTIFACTS_DIR": artifacts,
        "PGCUE_LOG_FORMAT": "json",
        "PGCUE_LOG_LEVEL": "warning",
        "PGCUE_RETRY_BASE_SECONDS": "0.2",
    }
    groups = [
        ["tts", "render", "proposals", "echo", "sleep", "resource-download"],
        ["orchestrate", "p-work", "p-file"],
    ]
    procs = []
    for types in groups:
        argv = [sys.executable, "-m", "pgcue.cli", "worker", "--import", "tests.helpers.pipelinetypes"]
        for t in types:
            argv += ["--type", t]
        procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


# The hour before the run, for the chart: a few finished jobs a minute, one in twenty failed.
HISTORY = """
INSERT INTO pgcue.jobs (type, channel_id, state, attempts, max_attempts, cancel_requested, result,
                        error_message, errors, progress, created_at, started_at, completed_at, updated_at)
SELECT t.type, 'shorts', s.state, CASE WHEN s.state = 'failed' THEN 3 ELSE 1 END, 3,
       s.state = 'cancelled',
       CASE WHEN s.state = 'completed' THEN '{}'::jsonb END,
       CASE WHEN s.state = 'failed' THEN 'the provider timed out'
            WHEN s.state = 'cancelled' THEN 'Job cancelled by user request' END,
       CASE WHEN s.state = 'failed' THEN jsonb_build_array(jsonb_build_object(
           'attempt', 3, 'at', pgcue.iso_ms(g.at), 'kind', 'error', 'error', 'the provider timed out'))
            ELSE '[]'::jsonb END,
       100, g.at - interval '20 s', g.at - interval '15 s', g.at, g.at
FROM generate_series(1, 420) AS i
CROSS JOIN LATERAL (SELECT now() - interval '61 minutes' + (i * interval '1 hour') / 420
                           + (random() * interval '5 s') AS at) g
CROSS JOIN LATERAL (SELECT (ARRAY['tts', 'render', 'idea', 'resource-download'])[1 + i % 4] AS type) t
CROSS JOIN LATERAL (SELECT CASE WHEN i % 20 = 3 THEN 'failed' WHEN i % 53 = 7 THEN 'cancelled'
                                ELSE 'completed' END AS state) s
"""


async def _enqueue(c: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await c.post("/api/jobs", json={"channelId": CHANNEL, **body})
    r.raise_for_status()
    job: dict[str, Any] = r.json()["job"]
    return job


async def _until(c: httpx.AsyncClient, job_id: str, test: Any, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = (await c.get(f"/api/jobs/{job_id}")).json()["job"]
        if test(job):
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} is {job['state']}")
        await asyncio.sleep(0.3)


async def _scene(api: Api) -> dict[str, str]:
    """A studio's channel in mid-afternoon: results, a failure, work running, a run waiting."""
    done = lambda j: j["state"] in ("completed", "failed", "cancelled")  # noqa: E731
    async with api.client("studio") as c:
        await _enqueue(c, type="echo", payload={"hello": "studio"})
        proposals = await _enqueue(c, type="proposals", payload={"brief": "a series on tides", "count": 4})
        render = await _enqueue(
            c,
            type="render",
            payload={
                "width": 640,
                "height": 360,
                "scenes": [
                    {"color": "#1d3557", "duration": 1.5, "caption": "Episode 12: Tides"},
                    {"color": "#457b9d", "duration": 1.5, "caption": "Why the sea breathes"},
                ],
            },
        )
        failed = await _enqueue(
            c, type="resource-download", payload={"resources": [{"url": "http://10.0.0.7/internal/stock.mp4"}]}
        )
        run = await _enqueue(c, type="orchestrate", payload={"pipeline": "episode-demo", "inputs": {"topic": "tides"}})
        for job in (proposals, render, failed):
            await _until(c, job["id"], done)
        tts = await _enqueue(c, type="tts", payload={"text": SPEECH, "segmentChars": 60})
        await _until(c, tts["id"], done)
        await _until(c, run["id"], lambda j: j.get("waitingFor") == "approval")
        await _enqueue(c, type="sleep", payload={"seconds": 600, "steps": 600})
        await _enqueue(c, type="tts", payload={"text": "Queued behind the others."}, runAt="2099-01-01T00:00:00Z")
    return {"tts": tts["id"], "run": run["id"]}


async def _shoot(api: Api, ids: dict[str, str], out: Path) -> list[Path]:
    from playwright.async_api import async_playwright

    shots = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for who, viewport in (("studio", DESKTOP), ("ops", DESKTOP), ("studio", PHONE)):
                context = await browser.new_context(viewport=viewport, base_url=api.url, device_scale_factor=1)
                page = await context.new_page()
                await page.goto("/ui/login")
                await page.get_by_label("API key").fill(api.keys[who])
                await page.get_by_role("button", name="Sign in").click()
                await page.wait_for_url("**/ui")
                if who == "ops":
                    await page.goto("/ui/operator")
                    await page.wait_for_timeout(800)
                    shots.append(out / "panel-operator.png")
                    await page.screenshot(path=str(shots[-1]), full_page=True)
                elif viewport is PHONE:
                    await page.goto(f"/ui?channelId={CHANNEL}")
                    await page.wait_for_timeout(1200)
                    shots.append(out / "panel-phone.png")
                    await page.screenshot(path=str(shots[-1]))
                else:
                    await page.goto(f"/ui?channelId={CHANNEL}")
                    await page.wait_for_timeout(1500)
                    shots.append(out / "panel-jobs.png")
                    await page.screenshot(path=str(shots[-1]), full_page=True)
                    tts = page.locator(f"#job-{ids['tts']}")
                    await tts.locator("button.expand").click()
                    await tts.locator("pre.output span").first.wait_for()
                    await page.wait_for_timeout(500)
                    shots.append(out / "panel-expanded.png")
                    await tts.screenshot(path=str(shots[-1]))
                    run = page.locator(f"#job-{ids['run']}")
                    await tts.locator("button.expand").click()
                    await run.locator("button.expand").click()
                    await run.locator("ol.stage-history").wait_for()
                    await page.wait_for_timeout(500)
                    shots.append(out / "panel-pipeline.png")
                    await run.screenshot(path=str(shots[-1]))
                await context.close()
        finally:
            await browser.close()
    return shots


async def main(out: Path) -> None:
    name = f"pgcue_shots_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(BASE_DSN, autocommit=True) as admin:
        admin.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(name)))
    artifacts = tempfile.mkdtemp(prefix="pgcue-shots-")
    settings = make_settings(dsn_for(name), artifacts_dir=artifacts, log_format="json")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with db.connect_sync(settings) as conn:
            migrate.migrate(conn)
        registry.load(["tests.helpers.pipelinetypes"])
        pool = await db.create_pool(settings, min_size=1, max_size=2)
        try:
            queue = Queue(pool)
            # The studio's types and the pipeline's, not the test suite's t-* types.
            await queue.register_types([s.row() for s in registry.all_types() if not s.name.startswith("t-")])
            await pool.execute(HISTORY)
            keys = {
                "studio": await queue.keys.create("studio", plan="paid", channels=[CHANNEL, "shorts"]),
                "ops": await queue.keys.create("ops", admin=True),
            }
            procs = _workers(settings, artifacts)
            async for api in serve(settings):
                api.keys.update(keys)
                ids = await _scene(api)
                out.mkdir(parents=True, exist_ok=True)
                for path in await _shoot(api, ids, out):
                    print(f"wrote {path.relative_to(ROOT)}")
        finally:
            await pool.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        with psycopg.connect(BASE_DSN, autocommit=True) as admin:
            admin.execute(psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(name)))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m tests.helpers.screenshots", description=__doc__)
    ap.add_argument("--out", type=Path, default=OUT, help="where the PNG files go (docs/img)")
    asyncio.run(main(ap.parse_args().out))
