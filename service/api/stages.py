"""Pipeline routes: a run's stages, and a person's decision on a paused run."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State

from pgcue.api.access import caller_of, clean_param, job_id_of, visible_job
from pgcue.api.jobs import JobIdPath
from pgcue.api.problems import bad_request, responses
from pgcue.core.queue import Queue
from pgcue.core.states import JobState
from pgcue.core.wire import ResumeBody, StagesOut


class StagesController(Controller):
    path = "/api/jobs/{job_id:str}"
    tags = ("pipelines",)
    security = ({"bearer": []},)

    async def _run(self, request: Request[Any, Any, Any], queue: Queue, job_id: str) -> StagesOut:
        job = await visible_job(queue, caller_of(request), job_id_of(job_id))
        # A job that is no pipeline run has no stages: an empty list, not a 404 for a job
        # that exists.
        stages = await queue.stages.of(job.id)
        waiting = job.waiting_for if job.state == JobState.QUEUED else None
        return StagesOut(job=job.to_wire(), waiting_for=waiting, stages=[s.to_wire() for s in stages])

    @get("/stages", summary="A pipeline run's stages", responses=responses(400, 404))
    async def stages(self, request: Request[Any, Any, Any], state: State, job_id: JobIdPath) -> StagesOut:
        return await self._run(request, state.queue, job_id)

    @post(
        "/resume",
        status_code=200,
        summary="Approve or reject the stage a paused pipeline run waits on",
        description='{"decision": "approve"} finishes the stage and the run goes on; {"decision": "reject", '
        '"feedback": "..."} runs the stage again with the feedback. A run that waits for no approval is 409.',
        responses=responses(400, 404, 409),
    )
    async def resume(
        self, request: Request[Any, Any, Any], state: State, job_id: JobIdPath, data: ResumeBody
    ) -> StagesOut:
        queue: Queue = state.queue
        caller = caller_of(request)
        job = await visible_job(queue, caller, job_id_of(job_id))
        clean_param(data.feedback, "feedback")
        if data.decision == "reject" and not (data.feedback or "").strip():
            raise bad_request(
                "feedback-required",
                "Feedback required",
                "a rejection needs feedback for the next try",
                field="feedback",
            )
        await queue.stages.resume(job.id, approve=data.decision == "approve", feedback=data.feedback, by=caller.user_id)
        return await self._run(request, queue, job_id)
