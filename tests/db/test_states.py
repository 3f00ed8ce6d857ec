"""The one list of states and event kinds (pgcue.core.states) agrees with the database's
check constraints, views and statements: adding a state or a kind in one place and not
the other fails here."""

from __future__ import annotations

import re
from importlib import resources

import asyncpg

from pgcue.core.states import STATE_ALIASES, EventKind, FailureKind, JobState, StageState, StateFilter, WaitingFor


async def _allowed(pool: asyncpg.Pool, table: str, constraint: str) -> set[str]:
    definition = await pool.fetchval(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = 'pgcue' AND t.relname = $1 AND c.conname = $2",
        table,
        constraint,
    )
    assert definition, f"no constraint {constraint} on pgcue.{table}"
    return set(re.findall(r"'([^']+)'::text", definition))


async def test_states_and_kinds_match_the_check_constraints(pool: asyncpg.Pool) -> None:
    assert await _allowed(pool, "jobs", "jobs_state_valid") == {s.value for s in JobState}
    assert await _allowed(pool, "pipeline_stages", "pipeline_stages_state_valid") == {s.value for s in StageState}
    assert await _allowed(pool, "jobs", "jobs_waiting_for_valid") == {w.value for w in WaitingFor}
    assert await _allowed(pool, "job_events", "job_events_kind_check") == {k.value for k in EventKind}


def test_the_list_filter_takes_every_state_and_its_aliases() -> None:
    assert {f.value for f in StateFilter} == {s.value for s in JobState} | set(STATE_ALIASES)


async def test_finished_states_match_the_schema(pool: asyncpg.Pool) -> None:
    """jobs_finished_has_completed_at names the finished states; so does the states module."""
    finished = await _allowed(pool, "jobs", "jobs_finished_has_completed_at")
    assert finished == {s.value for s in JobState if s.finished}


async def test_the_overview_view_has_a_column_per_state(pool: asyncpg.Pool) -> None:
    columns = {
        r["column_name"]
        for r in await pool.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'pgcue' "
            "AND table_name = 'queue_overview'"
        )
    }
    for state in JobState:
        if state is JobState.QUEUED:
            assert {"runnable", "scheduled"} <= columns  # queued is split by run_at
        else:
            assert state.value in columns, state


def test_every_state_literal_in_the_statements_is_known() -> None:
    """A quoted word that stands for a state in sql/*.sql (state = '...', state IN (...),
    kind = '...') is one the states module knows."""
    known = {*(s.value for s in JobState), *(s.value for s in StageState), *(w.value for w in WaitingFor)}
    kinds = {k.value for k in EventKind}
    failures = {k.value for k in FailureKind}
    folder = resources.files("pgcue.core") / "sql"
    for entry in folder.iterdir():
        text = entry.read_text()
        for clause in re.findall(r"state\s*(?:=|<>|IN)\s*\(?((?:'[a-z_]+'\s*,?\s*)+)", text):
            for word in re.findall(r"'([a-z_]+)'", clause):
                assert word in known, (entry.name, word)
        for word in re.findall(r"'([a-z]+:[a-z]+)'", text):
            assert word in kinds, (entry.name, word)
        for word in re.findall(r"'kind', '([a-z]+)'", text):
            assert word in failures, (entry.name, word)
