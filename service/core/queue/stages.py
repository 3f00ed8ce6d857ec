"""Pipeline runs in the database: their stages, parking and waking, a person's decision.

The orchestrator (workers/types/orchestrate.py) and the API (service/api/pipelines.py)
share these operations; every statement is in service/sql/. See docs/pipelines.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec
from pgcue.core.errors import InvalidTransition
from pgcue.core.queue import Executor, Queue, json_text

_encode = msgspec.json.Encoder().encode

STAGE_STATES = ("pending", "running", "in_review", "awaiting_approval", "done", "failed", "skipped", "cancelled")


class StageRow(msgspec.Struct, kw_only=True):
    """One stage of a run as stored (snake_case; the API shapes it)."""

    job_id: uuid.UUID
    position: int
    name: str
    spec: dict[str, Any]
    state: str
    iteration: int
    feedback: list[dict[str, Any]]
    child_id: uuid.UUID | None
    review_child_id: uuid.UUID | None
    result: Any
    result_path: str | None
    started_at: Any
    finished_at: Any
    updated_at: Any

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> StageRow:
        return cls(**dict(row))


class Pipelines:
    """Pipeline operations over a Queue's pool and statements."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.sql = queue.sql

    async def stages(self, job_id: uuid.UUID, *, conn: Executor | None = None) -> list[StageRow]:
        rows = await self.sql.fetch(conn or self.queue.pool, "list_pipeline_stages", job_id)
        return [StageRow.from_row(r) for r in rows]

    # --- the orchestrator's side (inside its transaction, holding the run's row) ---------

    async def lock_run(self, conn: asyncpg.Connection, job_id: uuid.UUID, attempt: int) -> asyncpg.Record | None:
        return await self.sql.fetchrow(conn, "lock_pipeline_run", job_id, attempt)

    async def create_stages(
        self, conn: asyncpg.Connection, job_id: uuid.UUID, stages: Sequence[tuple[str, dict[str, Any]]]
    ) -> int:
        names = [name for name, _ in stages]
        specs = [json_text(spec, "stage definition") for _, spec in stages]
        return len(await self.sql.fetch(conn, "insert_pipeline_stages", job_id, names, specs))

    async def reset_stopped_stages(self, conn: asyncpg.Connection, job_id: uuid.UUID) -> int:
        return len(await self.sql.fetch(conn, "reset_pipeline_stages", job_id))

    async def move(
        self,
        conn: asyncpg.Connection,
        stage: StageRow,
        state: str,
        *,
        iteration: int | None = None,
        feedback: dict[str, Any] | None = None,
        child_id: uuid.UUID | None = None,
        review_child_id: uuid.UUID | None = None,
        result: Any = None,
        result_path: str | None = None,
    ) -> None:
        """Move a stage from the state it was read in to `state` (with its event)."""
        assert state in STAGE_STATES
        row = await self.sql.fetchrow(
            conn,
            "update_pipeline_stage",
            stage.job_id,
            stage.position,
            state,
            iteration,
            None if feedback is None else json_text(feedback, "feedback"),
            child_id,
            review_child_id,
            None if result is None else json_text(result, "stage result"),
            result_path,
            stage.state,
        )
        if row is None:  # we hold the run's row, so only a bug gets here
            raise RuntimeError(f"stage {stage.name} of {stage.job_id} was not {stage.state}")
        stage.state = state

    async def park(
        self, conn: asyncpg.Connection, job_id: uuid.UUID, attempt: int, waiting_for: str, recheck: float | None
    ) -> bool:
        """Put the run back in the queue to wait (for its children, or for a person)."""
        rows = await self.sql.fetch(conn, "park_job", job_id, attempt, waiting_for, recheck)
        return bool(rows)

    # --- a person's side ---------------------------------------------------------------

    async def resume(
        self, job_id: uuid.UUID, *, approve: bool, feedback: str | None = None, by: str | None = None
    ) -> asyncpg.Record:
        """Approve, or reject with feedback, the stage a run waits on; wakes the run."""
        row = await self.sql.fetchrow(self.queue.pool, "resume_pipeline", job_id, approve, feedback, by)
        if row is None:
            job = await self.queue.get(job_id)  # raises JobNotFound
            if job.type != "orchestrate":
                raise InvalidTransition(job_id, f"a {job.type} job, not a pipeline run", "resume", "paused pipeline")
            raise InvalidTransition(job_id, job.state, "resume", "paused pipeline")
        return row

    async def stats(self, channels: list[str] | None) -> asyncpg.Record | None:
        return await self.sql.fetchrow(self.queue.pool, "pipeline_stats", channels)
