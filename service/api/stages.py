"""Pipeline routes: a run's stages, and a person's decision on a paused run (issue 5)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import Provide
from pgcue.api.auth import authenticated
from pgcue.api.jobs import _queue, caller_of, visible_job
from pgcue.api.problems import bad_request, responses
from pgcue.api.schemas import Base, JobOut, Timestamp, iso_ms
from pgcue.core.queue import Queue
from pgcue.core.queue.stages import Pipelines, StageRow


class StageOut(Base):
    position: int
    name: str
    state: str
    iteration: int
    type: str
    reviewer: str | None
    max_iterations: int
    approval: bool
    feedback: list[dict[str, Any]]
    child_id: str | None
    review_child_id: str | None
    result: Any
    result_path: str | None
    started_at: Timestamp | None
    finished_at: Timestamp | None

    @classmethod
    def of(cls, s: StageRow) -> StageOut:
        return cls(
            position=s.position,
            name=s.name,
            state=s.state,
            iteration=s.iteration,
            type=str(s.spec.get("type")),
            reviewer=s.spec.get("reviewer"),
            max_iterations=int(s.spec.get("maxIterations", 1)),
            approval=bool(s.spec.get("approval")),
            feedback=s.feedback,
            child_id=None if s.child_id is None else str(s.child_id),
            review_child_id=None if s.review_child_id is None else str(s.review_child_id),
            result=s.result,
            result_path=s.result_path,
            started_at=iso_ms(s.started_at),
            finished_at=iso_ms(s.finished_at),
        )


class StagesOut(Base):
    job: JobOut
    waiting_for: str | None
    stages: list[StageOut]


class ResumeBody(Base, forbid_unknown_fields=True):
    """A person's decision on the stage a paused pipeline run waits on."""

    decision: Literal["approve", "reject"]
    feedback: Annotated[str, msgspec.Meta(max_length=4000)] | None = None


class PipelinesController(Controller):
    path = "/api/jobs/{job_id:uuid}"
    tags = ("pipelines",)
    middleware = (authenticated,)
    security = ({"bearer": []},)
    dependencies = {"queue": Provide(_queue, sync_to_thread=False)}  # noqa: RUF012

    async def _run(self, request: Request[Any, Any, Any], queue: Queue, job_id: uuid.UUID) -> StagesOut:
        job = await visible_job(queue, caller_of(request), job_id)
        # A job that is no pipeline run has no stages: an empty list, not a 404 for a
        # job that exists (schemathesis' stateful run found that inconsistency).
        stages = await Pipelines(queue).stages(job_id) if job.type == "orchestrate" else []
        waiting = job.waiting_for if job.state.value == "queued" else None
        return StagesOut(job=JobOut.of(job), waiting_for=waiting, stages=[StageOut.of(s) for s in stages])

    @get("/stages", summary="A pipeline run's stages", responses=responses(400, 404))
    async def stages(self, request: Request[Any, Any, Any], queue: Queue, job_id: uuid.UUID) -> StagesOut:
        return await self._run(request, queue, job_id)

    @post(
        "/resume",
        status_code=200,
        summary="Approve or reject the stage a paused pipeline run waits on",
        description='{"decision": "approve"} finishes the stage and the run goes on; {"decision": "reject", '
        '"feedback": "..."} runs the stage again with the feedback. A run that waits for no approval is 409.',
        responses=responses(400, 404, 409),
    )
    async def resume(
        self, request: Request[Any, Any, Any], queue: Queue, job_id: uuid.UUID, data: ResumeBody
    ) -> StagesOut:
        caller = caller_of(request)
        await visible_job(queue, caller, job_id)
        if data.decision == "reject" and not (data.feedback or "").strip():
            raise bad_request("feedback-required", "Feedback required", "a rejection needs feedback for the next try")
        await Pipelines(queue).resume(
            job_id, approve=data.decision == "approve", feedback=data.feedback, by=caller.user_id
        )
        return await self._run(request, queue, job_id)
