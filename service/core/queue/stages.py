"""Pipeline runs' stages: what the orchestrator reads and moves, and a person's decision.

The orchestrator makes its moves inside `queue.transaction()`, holding the run's row
(lock_run); the API reads the stages and resumes a paused run. Every statement is in
sql/; docs/pipelines.md tells the whole story.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pgcue.core.errors import InvalidTransition
from pgcue.core.models import Decision, StageRow
from pgcue.core.queue.enqueue import json_text
from pgcue.core.states import StageState, WaitingFor

if TYPE_CHECKING:
    from pgcue.core.queue import Queue


class Stages:
    def __init__(self, queue: Queue) -> None:
        self.q = queue

    async def of(self, job_id: uuid.UUID) -> list[StageRow]:
        """A run's stages in order (none for a job that is no pipeline run)."""
        rows = await self.q.sql.fetch(self.q.pool, "list_pipeline_stages", job_id)
        return [StageRow(**dict(r)) for r in rows]

    async def of_many(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[StageRow]]:
        """The stages of several runs, each run's in order (a job that is no run: absent)."""
        out: dict[uuid.UUID, list[StageRow]] = {}
        if job_ids:
            for r in await self.q.sql.fetch(self.q.pool, "list_pipeline_stages_of", list(job_ids)):
                out.setdefault(r["job_id"], []).append(StageRow(**dict(r)))
        return out

    # --- the orchestrator's side (inside its transaction, holding the run's row) ---------

    async def lock_run(self, job_id: uuid.UUID, fence: int) -> bool | None:
        """Lock the run's row while this worker still holds it: None when it does not (the
        lease was lost), else whether its cancellation was requested."""
        row = await self.q.sql.fetchrow(self.q.pool, "lock_pipeline_run", job_id, fence)
        return None if row is None else bool(row["cancel_requested"])

    async def create(self, job_id: uuid.UUID, stages: Sequence[tuple[str, dict[str, Any]]]) -> int:
        names = [name for name, _ in stages]
        specs = [json_text(spec, "stage definition") for _, spec in stages]
        return len(await self.q.sql.fetch(self.q.pool, "insert_pipeline_stages", job_id, names, specs))

    async def reset_stopped(self, job_id: uuid.UUID) -> int:
        return len(await self.q.sql.fetch(self.q.pool, "reset_pipeline_stages", job_id))

    async def move(
        self,
        stage: StageRow,
        state: StageState,
        *,
        iteration: int | None = None,
        feedback: dict[str, Any] | None = None,
        child_id: uuid.UUID | None = None,
        review_child_id: uuid.UUID | None = None,
        result: Any = None,
        result_path: str | None = None,
    ) -> None:
        """Move a stage from the state it was read in to `state` (with its event)."""
        row = await self.q.sql.fetchrow(
            self.q.pool,
            "update_pipeline_stage",
            stage.job_id,
            stage.position,
            str(state),
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
        stage.state = str(state)

    async def park(self, job_id: uuid.UUID, fence: int, waiting_for: WaitingFor, recheck: float | None) -> bool:
        """Put the run back in the queue to wait (for its children, or for a person)."""
        rows = await self.q.sql.fetch(self.q.pool, "park_job", job_id, fence, str(waiting_for), recheck)
        return bool(rows)

    # --- a person's side ---------------------------------------------------------------

    async def resume(
        self, job_id: uuid.UUID, *, approve: bool, feedback: str | None = None, by: str | None = None
    ) -> Decision:
        """Approve, or reject with feedback, the stage a run waits on; wakes the run."""
        row = await self.q.sql.fetchrow(self.q.pool, "resume_pipeline", job_id, approve, feedback, by)
        if row is None:
            job = await self.q.get(job_id)  # raises JobNotFound
            if not await self.of(job_id):
                raise InvalidTransition(job_id, f"a {job.type} job, not a pipeline run", "resume", "paused pipeline")
            raise InvalidTransition(job_id, job.state, "resume", "paused pipeline")
        return Decision(row["stage"], row["stage_state"], row["iteration"])

    async def awaiting_approval(self, channels: Sequence[str] | None) -> int:
        """Parked runs in `channels` (None: every channel) that wait for a person."""
        row = await self.q.sql.fetchrow(self.q.pool, "pipeline_stats", None if channels is None else list(channels))
        return int(row["awaiting_approval"]) if row else 0
