"""The newest migration upgrades a populated database: jobs in every state, a pipeline run
mid-way (running, its stages half done, a child queued), retries pending, events of every
job. Nothing is lost or changed by the upgrade, and the reads the migration moved to other
indexes return what a plain ORDER BY over the table returns, page after page."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from pgcue.core import db, migrate
from pgcue.core.models import Completion, Failure, NewJob
from pgcue.core.queue import BOTTOM, LAST_ID, TOP, Queue
from tests.conftest import make_settings, valid_payload

pytestmark = pytest.mark.timeout(180)

FILL = Path(__file__).resolve().parents[2] / "bench" / "panel_fill.sql"
TYPES = ["tts", "render", "idea", "proposals", "humanize", "sleep", "orchestrate"]
# Every row of each table, in a fixed order: what the upgrade must leave as it was.
TABLES = {
    "jobs": "SELECT md5(string_agg(j::text, '|' ORDER BY id)) FROM pgcue.jobs j",
    "job_events": "SELECT md5(string_agg(e::text, '|' ORDER BY id)) FROM pgcue.job_events e",
    "pipeline_stages": "SELECT md5(string_agg(s::text, '|' ORDER BY job_id, position)) FROM pgcue.pipeline_stages s",
}
# What a page of GET /api/jobs means, without any index in mind.
REFERENCE = """
    SELECT id FROM pgcue.jobs
    WHERE channel_id = ANY($1::text[]) AND (created_at, id) < ($2::timestamptz, $3::uuid)
      AND created_at >= $4::timestamptz AND ($5::bool OR parent_id IS NULL)
    ORDER BY created_at DESC, id DESC LIMIT $6
"""


async def _populate(dsn: str) -> None:
    """At the previous version: a week of history shaped like a studio's (every state,
    pipeline runs with stage jobs) and, through the façade, live jobs with their events."""
    pool = await db.create_pool(make_settings(dsn), min_size=1, max_size=2)
    try:
        q = Queue(pool)
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO pgcue.job_types (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", TYPES
            )
            await conn.execute(FILL.read_text(), 3_000, "studio", TYPES[:-1])
            # A job of a type the registry no longer has (registered by an older release).
            await conn.execute(
                "INSERT INTO pgcue.jobs (id, type, channel_id, state, payload, completed_at, attempts) "
                "VALUES ($1, 'retired-type', 'studio', 'completed', '{}', now(), 1)",
                uuid.uuid4(),
            )
        live = [NewJob(type=t, channel_id=c, payload={"n": i}) for i, t in enumerate(TYPES[:-1]) for c in ("a", "b")]
        await q.enqueue_many(live)
        claimed = await q.claim("tts", 10, "w-upgrade", 60.0)
        done, failing = claimed[0], claimed[1]
        await q.complete([Completion(done.id, done.fence, {"ok": True})])
        await q.fail([Failure(failing.id, failing.fence, "boom", retry_in=3600.0)])  # a retry waits
        await q.cancel((await q.list_jobs(channels=["a"], type="render"))[0].id)
        await q.claim("render", 10, "w-upgrade", 60.0)  # b's render: running
        run = (await q.enqueue_many([NewJob(type="orchestrate", channel_id="a", payload={"pipeline": "episode"})]))[0]
        held = await q.claim("orchestrate", 1, "w-upgrade", 60.0)
        assert [j.id for j in held] == [run]
        await q.stages.create(run, [("script", {}), ("voice", {}), ("render", {})])
        stages = await q.stages.of(run)
        await q.stages.move(stages[0], "done", result={"script": "…"})
        child = await q.enqueue_many([NewJob(type="tts", channel_id="a", payload={"text": "hi"}, parent_id=run)])
        await q.stages.move(stages[1], "running", child_id=child[0])
    finally:
        await pool.close()


def _fingerprint(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        out: dict[str, Any] = {name: conn.execute(sql).fetchone()[0] for name, sql in TABLES.items()}  # type: ignore[index]
        out["states"] = dict(conn.execute("SELECT state, count(*) FROM pgcue.jobs GROUP BY state").fetchall())
        out["events"] = conn.execute("SELECT count(*) FROM pgcue.job_events").fetchone()[0]  # type: ignore[index]
    return out


async def test_the_newest_migration_keeps_every_job_event_and_stage_of_a_populated_database(
    empty_database: str,
) -> None:
    newest = migrate.latest_version()
    with psycopg.connect(empty_database, autocommit=True) as conn:
        migrate.migrate(conn, "pgcue", target=newest - 1)
    await _populate(empty_database)
    before = _fingerprint(empty_database)
    assert set(before["states"]) == {"queued", "running", "completed", "failed", "cancelled"}, before["states"]
    assert before["events"] > 20, before

    with psycopg.connect(empty_database, autocommit=True) as conn:
        assert [m.version for m in migrate.migrate(conn, "pgcue")] == [newest]
        migrate.check(conn, "pgcue")
    assert _fingerprint(empty_database) == before

    # The unfiltered list, now a merge of the (type, state) ranges, pages through each
    # scope exactly as the plain query does: every row once, in order, none skipped.
    pool = await db.create_pool(make_settings(empty_database), min_size=1, max_size=2)
    try:
        q = Queue(pool)
        week_ago = datetime.now(UTC) - timedelta(days=3)
        for scope, children, after in (
            (["studio"], False, None),
            (["studio"], True, None),
            (["studio", "other-3", "a", "b"], True, None),
            (["studio", "nowhere"], False, week_ago),
            (["a"], True, None),
        ):
            seen: list[uuid.UUID] = []
            cursor = None
            while True:
                page = await q.list_jobs(
                    channels=scope, before=cursor, limit=37, include_children=children, created_after=after
                )
                async with pool.acquire() as conn:
                    top = cursor or (TOP, LAST_ID)
                    floor = after or BOTTOM
                    want = [r["id"] for r in await conn.fetch(REFERENCE, scope, *top, floor, children, 37)]
                assert [j.id for j in page] == want, (scope, children, cursor)
                seen += want
                if len(page) < 37:
                    break
                cursor = (page[-1].created_at, page[-1].id)
            async with pool.acquire() as conn:
                total = await conn.fetchval(
                    "SELECT count(*) FROM pgcue.jobs WHERE channel_id = ANY($1) AND ($2 OR parent_id IS NULL) "
                    "AND created_at >= $3",
                    scope,
                    children,
                    after or BOTTOM,
                )
            assert len(seen) == len(set(seen)) == total, (scope, children, len(seen), total)
        retired = await q.list_jobs(channels=["studio"], limit=10)
        assert any(j.type == "retired-type" for j in retired)
    finally:
        await pool.close()


async def test_a_drained_type_leaves_no_hole_in_the_unfiltered_list(pool: asyncpg.Pool) -> None:
    """A channel whose only jobs of some type are dead row versions (all deleted) still
    lists the rest: the skip scan over its types passes over an empty one."""
    q = Queue(pool)
    ids = await q.enqueue_many(
        [NewJob(type=t, channel_id="solo", payload=valid_payload(t)) for t in ("t-count", "t-quick")]
    )
    await q.cancel(ids[0])
    await q.delete(ids[0])
    assert [j.id for j in await q.list_jobs(channels=["solo"])] == [ids[1]]
