"""The Jobs panel's workload: how fast its pages answer with a big table behind them.

A fresh database gets `jobs` rows in one INSERT … SELECT generate_series (bench/panel_fill.sql:
a studio's week of history, half of it in the measured user's channel), then VACUUM
ANALYZE (what autovacuum does on its own). One `pgcue serve` process answers; a browser's
requests are made by `clients` concurrent asyncio clients on this machine, each signed in
through the panel's own form (its session cookie), one page after another for `seconds`
per page:

    list       GET /ui?channelId=bench-channel                      the jobs page: counts, recent results,
                                                                     latest proposals, the newest 50 jobs
    filtered   GET /ui?channelId=…&type=tts&state=failed             a filter over the 2.5 M rows of the channel
    deep       GET /ui?channelId=…&cursor=<a cursor 1 M rows down>   a page far into the history
    api        GET /api/jobs?channelId=…&state=failed&limit=50       the same filter for a program
    operator   GET /ui/operator                                      the fleet (an admin key)

Each answer must be a 200; latency percentiles are per page. The counts and the operator
view come from snapshots shared by every session (refreshed at most every 3 and 5 s in the
background), so what is measured is what a person waits for.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from pathlib import Path
from typing import Any

import httpx

from bench.api_bench import ApiServer, _own_cpu_seconds
from bench.pgcue_bench import _pct, scratch_database
from pgcue.core import db
from pgcue.core.models import JobType
from pgcue.core.queue import Queue

HERE = Path(__file__).resolve().parent
CHANNEL = "bench-channel"
TYPES = [
    "tts",
    "render",
    "resource-download",
    "idea",
    "proposals",
    "fact-check",
    "humanize",
    "discover",
    "echo",
    "sleep",
]
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')


async def _sign_in(url: str, key: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30.0), headers={"Accept": "text/html"})
    form = await client.get("/ui/login")
    token = LOGIN_TOKEN.search(form.text)
    assert token is not None, form.text[:200]
    done = await client.post("/ui/login", data={"key": key, "login_token": token.group(1)})
    assert done.status_code == 303, done.text[:200]
    return client


async def _load(client: httpx.AsyncClient, path: str, stop: float, latencies: list[float], bad: list[int]) -> None:
    while time.monotonic() < stop:
        began = time.perf_counter()
        r = await client.get(path)
        latencies.append(time.perf_counter() - began)
        if r.status_code != 200:
            bad.append(r.status_code)


async def _page(
    server: ApiServer, clients: list[httpx.AsyncClient], path: str, seconds: float, warmup: float
) -> dict[str, Any]:
    scratch: list[float] = []
    await asyncio.gather(*(_load(c, path, time.monotonic() + warmup, scratch, []) for c in clients))
    latencies: list[float] = []
    bad: list[int] = []
    cpu0, own0, began = server.cpu_seconds(), _own_cpu_seconds(), time.monotonic()
    await asyncio.gather(*(_load(c, path, time.monotonic() + seconds, latencies, bad) for c in clients))
    wall = time.monotonic() - began
    cpu1, own1 = server.cpu_seconds(), _own_cpu_seconds()
    ms = sorted(x * 1000 for x in latencies)
    return {
        "path": path,
        "requests": len(ms),
        "non_200": len(bad),
        "requests_per_s": len(ms) / wall,
        "p50_ms": _pct(ms, 50),
        "p95_ms": _pct(ms, 95),
        "p99_ms": _pct(ms, 99),
        "max_ms": ms[-1] if ms else float("nan"),
        "server_cpu_pct": 100 * (cpu1 - cpu0) / wall,
        "client_cpu_pct": 100 * (own1 - own0) / wall,
    }


async def panel(
    base_dsn: str, jobs: int = 5_000_000, seconds: float = 10.0, warmup: float = 2.0, clients: int = 4
) -> dict[str, Any]:
    """The panel's pages over `jobs` jobs, `clients` at a time, `seconds` each."""
    async with scratch_database(base_dsn) as settings:
        pool = await db.create_pool(settings, min_size=1, max_size=2)
        try:
            queue = Queue(pool)
            await queue.register_types([JobType(name=t) for t in [*TYPES, "orchestrate"]])
            user = await queue.keys.create("bench-user", plan="paid", channels=[CHANNEL], label="bench")
            admin = await queue.keys.create("bench-ops", admin=True, label="bench")
            print(f"  panel: filling {jobs:,} jobs …", flush=True)
            began = time.monotonic()
            async with pool.acquire() as conn:
                await conn.execute((HERE / "panel_fill.sql").read_text(), jobs, CHANNEL, TYPES, timeout=3600)
                filled = time.monotonic() - began
                await conn.execute("VACUUM ANALYZE pgcue.jobs", timeout=3600)
                vacuumed = time.monotonic() - began - filled
                size = await conn.fetchval("SELECT pg_total_relation_size('pgcue.jobs')")
                # A cursor a million rows down the channel's history (for `deep`).
                deep = await conn.fetchrow(
                    "SELECT created_at, id FROM pgcue.jobs WHERE channel_id = $1 AND parent_id IS NULL "
                    "ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1",
                    CHANNEL,
                    min(1_000_000, jobs // 4),
                    timeout=600,
                )
        finally:
            await pool.close()
        cursor = _cursor(deep["created_at"], deep["id"])
        print(f"  panel: filled in {filled:.0f} s, vacuumed in {vacuumed:.0f} s; measuring …", flush=True)
        server = ApiServer(settings)
        users: list[httpx.AsyncClient] = []
        admins: list[httpx.AsyncClient] = []
        try:
            await server.start()
            users = [await _sign_in(server.url, user) for _ in range(clients)]
            admins = [await _sign_in(server.url, admin) for _ in range(clients)]
            pages = {
                "list": (users, f"/ui?channelId={CHANNEL}"),
                "filtered": (users, f"/ui?channelId={CHANNEL}&type=tts&state=failed"),
                "deep": (users, f"/ui?channelId={CHANNEL}&cursor={cursor}"),
                "api": (users, f"/api/jobs?channelId={CHANNEL}&state=failed&limit=50"),
                "operator": (admins, "/ui/operator"),
            }
            out: dict[str, Any] = {
                "jobs": jobs,
                "clients": clients,
                "fill_seconds": round(filled, 1),
                "vacuum_seconds": round(vacuumed, 1),
                "table_mb": round(size / 2**20),
            }
            for name, (who, path) in pages.items():
                print(f"  panel: {name} …", flush=True)
                out[name] = await _page(server, who, path, seconds, warmup)
            return out
        finally:
            for c in users + admins:
                await c.aclose()
            server.stop()


def _cursor(created_at: Any, job_id: Any) -> str:
    """The list's keyset cursor for (created_at, id), as pgcue.api.jobs.encode_cursor makes it."""
    raw = f"{created_at.isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def print_panel(p: dict[str, Any]) -> None:
    print(
        f"\n  Jobs panel: {p['jobs']:,} jobs in the table ({p['table_mb']:,} MB with its indexes; filled in "
        f"{p['fill_seconds']:,.0f} s), one API process, {p['clients']} concurrent clients"
    )
    print(f"    {'page':<10}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'API CPU %':>11}  {'p95 ≤ 100 ms':<12}")
    for name in ("list", "filtered", "deep", "api", "operator"):
        r = p.get(name)
        if not r:
            continue
        ok = "yes" if r["p95_ms"] <= 100 and not r["non_200"] else "NO"
        print(
            f"    {name:<10}{r['requests_per_s']:>9.1f}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r['p99_ms']:>9.1f}"
            f"{r['server_cpu_pct']:>11.0f}  {ok:<12}"
        )
