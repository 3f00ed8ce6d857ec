"""The Jobs panel's reads stay on their indexes: EXPLAIN of each hot statement (the plan a
prepared statement gets after its first runs, forced here: plan_cache_mode =
force_generic_plan) over a table of 60,000 jobs shaped like bench/panel_fill.sql shows the
index it was written for and no sequential scan of jobs. `make bench BENCH_ARGS="--only
panel"` measures the same reads over 5,000,000 jobs (docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pgcue.core.queue import BOTTOM, LAST_ID, TOP
from pgcue.core.statements import statements_for

pytestmark = pytest.mark.timeout(120)

FILL = Path(__file__).resolve().parents[2] / "bench" / "panel_fill.sql"
TYPES = ["tts", "render", "idea", "proposals", "humanize", "sleep"]
STATES = ["queued", "running", "completed", "failed", "cancelled"]


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", []):
        out.extend(_nodes(child))
    return out


async def _plan(conn: asyncpg.Connection, name: str, *args: Any) -> list[dict[str, Any]]:
    text = statements_for("pgcue")[name]
    raw = await conn.fetchval("EXPLAIN (FORMAT JSON) " + text, *args)
    return _nodes((json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"])


def _indexes(nodes: list[dict[str, Any]]) -> set[str]:
    return {n["Index Name"] for n in nodes if "Index Name" in n}


def _seq_scans_of_jobs(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "jobs"]


@pytest.fixture
async def big(pool: asyncpg.Pool) -> asyncpg.Pool:
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO pgcue.job_types (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", TYPES)
        await conn.execute(FILL.read_text(), 60_000, "bench-channel", TYPES)
        await conn.execute("VACUUM ANALYZE pgcue.jobs")
    return pool


async def test_the_panels_reads_use_their_indexes_in_generic_plans(big: asyncpg.Pool) -> None:
    async with big.acquire() as conn:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute("SET random_page_cost = 1.1")
        ch = ["bench-channel"]
        cases = {
            "list_jobs": (("jobs_channel_type_state_idx", "jobs_pkey"), (ch, TOP, LAST_ID, BOTTOM, False, 51)),
            "list_jobs_filtered": (
                ("jobs_channel_type_state_idx",),
                (ch, None, ["failed"], TOP, LAST_ID, BOTTOM, False, None, 51),
            ),
            "count_jobs": (
                ("jobs_channel_type_state_idx",),
                ("bench-channel", None, STATES, BOTTOM, TOP, False, 10_000),
            ),
            "recent_completed_jobs": (("jobs_channel_completed_idx",), (ch, 6, False)),
            "latest_completed_of_type": (("jobs_channel_type_state_idx",), ("bench-channel", "proposals")),
            "fleet_queues": (("jobs_claim_idx", "jobs_running_idx"), (60.0,)),
            "fleet_throughput": (("jobs_finished_idx",), (3600.0,)),
            "fleet_recent_failures": (("jobs_errors_idx",), (50,)),
            "fleet_stuck_jobs": (("jobs_running_idx",), (50,)),
        }
        for name, (wanted, args) in cases.items():
            nodes = await _plan(conn, name, *args)
            used = _indexes(nodes)
            assert set(wanted) <= used, (name, used)
            assert not _seq_scans_of_jobs(nodes), (name, [n["Node Type"] for n in nodes])


async def test_a_page_deep_in_the_history_costs_what_the_first_one_does(big: asyncpg.Pool) -> None:
    """The keyset bound is an index condition, not a filter: a page a million rows down
    reads at most a page's worth of index entries per (type, state) range, like the first,
    and fetches only the page's rows from the table."""
    async with big.acquire() as conn:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        deep = await conn.fetchrow(
            "SELECT created_at, id FROM pgcue.jobs WHERE channel_id = 'bench-channel' ORDER BY created_at, id "
            "OFFSET 1000 LIMIT 1"
        )
        text = statements_for("pgcue")["list_jobs"]
        ranges = (len(TYPES) + 1) * len(STATES)  # and orchestrate
        for cursor in ((TOP, LAST_ID), (deep["created_at"], deep["id"])):
            raw = await conn.fetchval(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + text, ["bench-channel"], *cursor, BOTTOM, False, 51
            )
            nodes = _nodes((json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"])
            scans = [n for n in nodes if "ROW(created_at, id) <" in n.get("Index Cond", "")]
            assert [n["Index Name"] for n in scans] == ["jobs_channel_type_state_idx"], scans
            scan = scans[0]
            read = (scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0)) * scan["Actual Loops"]
            assert scan["Actual Loops"] <= ranges, scan
            assert read <= ranges * 51 * 2, scan  # a page per range, and the stage jobs the filter skips
            fetched = next(n for n in nodes if n.get("Index Name") == "jobs_pkey")
            assert fetched["Actual Loops"] <= 51, fetched  # only the page's rows come from the table
