"""Job routes: parse, authorise, call the queue façade, shape the answer."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.params import Parameter

from pgcue.api.access import caller_of, channel_scope, clean_param, job_id_of, visible_job
from pgcue.api.problems import ApiProblem, bad_request, forbidden_plan, not_found, responses
from pgcue.core.batching import EnqueueBatcher
from pgcue.core.errors import InvalidJob, UnknownJobType
from pgcue.core.models import Job, NewJob
from pgcue.core.queue import Queue
from pgcue.core.queue.enqueue import check_run_at
from pgcue.core.states import StateFilter, parse_state
from pgcue.core.wire import Cleared, JobEnvelope, JobList, JobPage, NewJobBody, StatRow, Stats, TypePolicyOut

MAX_LIMIT = 200
RECENT = 6  # the six most recently completed results, as the studio's results strip shows
WORKERS_RECENT_SECONDS = 60.0


def encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        created, _, job_id = raw.partition("|")
        when = datetime.fromisoformat(created)
        checked = check_run_at(when, "cursor")
        if checked is None:
            raise ValueError("no time")
        return checked, uuid.UUID(job_id)
    except (ValueError, binascii.Error, UnicodeDecodeError, InvalidJob):
        raise bad_request(
            "bad-cursor",
            "Bad cursor",
            "cursor is not a nextCursor this API returned; drop it to start from the top",
            field="cursor",
        ) from None


ChannelQuery = Annotated[
    str | None, Parameter(query="channelId", min_length=1, max_length=200, description="one of your channels")
]
# No length limit: whatever the id, job_id_of answers "not a job id" (a 404), not a 400.
JobIdPath = Annotated[str, Parameter(description="the job's id (a UUID)")]


class JobsController(Controller):
    path = "/api"
    tags = ("jobs",)
    security = ({"bearer": []},)

    @post(
        "/jobs",
        status_code=201,
        summary="Enqueue a job",
        description="Enqueue a job in one of your channels. A repeated Idempotency-Key returns the first job "
        "(no duplicate); reusing a key for a different job is 409. The payload is checked against the type's "
        "schema (422 naming the field). Bodies over 1 MiB are refused (413).",
        responses=responses(400, 403, 404, 409, 413, 422),
    )
    async def enqueue(
        self,
        request: Request[Any, Any, Any],
        data: NewJobBody,
        state: State,
        idempotency_key: Annotated[
            str | None,
            Parameter(header="Idempotency-Key", min_length=1, max_length=200, description="one job per key"),
        ] = None,
    ) -> JobEnvelope:
        queue: Queue = state.queue
        caller = caller_of(request)
        clean_param(data.type, "type")
        clean_param(idempotency_key, "Idempotency-Key")
        entry = await queue.types.get(data.type)
        if entry is None:
            raise UnknownJobType(data.type)
        channel_scope(caller, data.channel_id)
        if not caller.may_use(entry.plan):
            raise forbidden_plan(data.type, caller.plan, entry.plan)
        owner = caller.user_id
        if caller.admin:
            owner = await queue.fleet.channel_owner(data.channel_id) or caller.user_id
        enqueuer: EnqueueBatcher = state.enqueuer
        job = await enqueuer.enqueue(
            NewJob(
                type=data.type,
                channel_id=data.channel_id,
                payload=data.payload,
                owner_id=owner,
                priority=data.priority,
                run_at=data.run_at,
                max_attempts=data.max_attempts,
                idempotency_key=idempotency_key,
                unique_key=data.unique_key,
                on_conflict=data.on_conflict,
            )
        )
        if idempotency_key is not None and (
            job.type != data.type or job.channel_id != data.channel_id or job.payload != data.payload
        ):
            raise ApiProblem(
                409,
                "idempotency-key-reused",
                "Idempotency-Key already used",
                f"Idempotency-Key {idempotency_key!r} already made job {job.id} with a different type, "
                "channel or payload; use a new key for a new job",
                field="Idempotency-Key",
            )
        return JobEnvelope(job=job.to_wire())

    @get(
        "/jobs",
        summary="List jobs, newest first",
        description="Keyset pagination: pass the answer's nextCursor as cursor for the next page.",
        responses=responses(400, 404),
    )
    async def list_jobs(
        self,
        request: Request[Any, Any, Any],
        state: State,
        channel_id: ChannelQuery = None,
        job_type: Annotated[str | None, Parameter(query="type", min_length=1, max_length=63)] = None,
        job_state: Annotated[StateFilter | None, Parameter(query="state")] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 50,
        cursor: Annotated[str | None, Parameter(min_length=1, max_length=200)] = None,
    ) -> JobPage:
        queue: Queue = state.queue
        scope = channel_scope(caller_of(request), channel_id)
        clean_param(job_type, "type")
        before = decode_cursor(cursor) if cursor else None
        if scope == []:
            return JobPage(jobs=[], next_cursor=None)
        jobs = await queue.list_jobs(
            channels=scope,
            type=job_type,
            state=parse_state(job_state).value if job_state else None,
            before=before,
            limit=limit + 1,
        )
        more = len(jobs) > limit
        jobs = jobs[:limit]
        return JobPage(jobs=[j.to_wire() for j in jobs], next_cursor=encode_cursor(jobs[-1]) if more else None)

    @get(
        "/jobs/recent",
        summary="The six most recently completed jobs, with their results",
        responses=responses(400, 404),
    )
    async def recent(self, request: Request[Any, Any, Any], state: State, channel_id: ChannelQuery = None) -> JobList:
        queue: Queue = state.queue
        scope = channel_scope(caller_of(request), channel_id)
        if scope == []:
            return JobList(jobs=[])
        return JobList(jobs=[j.to_wire() for j in await queue.recent(scope, RECENT)])

    @get("/jobs/{job_id:str}", summary="One job", responses=responses(400, 404))
    async def get_job(self, request: Request[Any, Any, Any], state: State, job_id: JobIdPath) -> JobEnvelope:
        job = await visible_job(state.queue, caller_of(request), job_id_of(job_id))
        return JobEnvelope(job=job.to_wire())

    @post(
        "/jobs/{job_id:str}/cancel",
        status_code=200,
        summary="Cancel a job",
        description="A queued job is cancelled at once; a running one gets cancelRequested and stops at its next "
        "checkpoint (its stream then shows job:status cancelled). A finished job is 409.",
        responses=responses(400, 404, 409),
    )
    async def cancel(self, request: Request[Any, Any, Any], state: State, job_id: JobIdPath) -> JobEnvelope:
        job = await visible_job(state.queue, caller_of(request), job_id_of(job_id))
        return JobEnvelope(job=(await state.queue.cancel(job.id)).to_wire())

    @post(
        "/jobs/{job_id:str}/retry",
        status_code=200,
        summary="Retry a failed or cancelled job",
        responses=responses(400, 404, 409),
    )
    async def retry(self, request: Request[Any, Any, Any], state: State, job_id: JobIdPath) -> JobEnvelope:
        job = await visible_job(state.queue, caller_of(request), job_id_of(job_id))
        return JobEnvelope(job=(await state.queue.retry(job.id)).to_wire())

    @delete(
        "/jobs/{job_id:str}",
        summary="Delete a finished job, its events and its artifacts",
        responses=responses(400, 404, 409),
    )
    async def delete_job(self, request: Request[Any, Any, Any], state: State, job_id: JobIdPath) -> None:
        job = await visible_job(state.queue, caller_of(request), job_id_of(job_id))
        await state.queue.delete(job.id)

    @post(
        "/channels/{channel_id:str}/clear",
        status_code=200,
        summary="Delete every finished job of a channel (and their artifacts)",
        description="Queued and running jobs stay. Returns how many jobs were deleted.",
        responses=responses(400, 404),
    )
    async def clear(self, request: Request[Any, Any, Any], state: State, channel_id: str) -> Cleared:
        if len(channel_id) > 200:
            raise not_found("channel ids are at most 200 characters")
        channel_scope(caller_of(request), channel_id)
        return Cleared(channel_id=channel_id, deleted=await state.queue.clear_finished(channel_id))

    @get(
        "/stats",
        summary="Depth per type and state, policies, paused channels (and, for admin keys, the fleet's workers)",
        description="Over the caller's channels; an admin key sees the whole fleet.",
        responses=responses(400),
    )
    async def stats(self, request: Request[Any, Any, Any], state: State) -> Stats:
        queue: Queue = state.queue
        scope = channel_scope(caller_of(request), None)
        stats = await queue.fleet.stats(scope, WORKERS_RECENT_SECONDS)
        return Stats(
            depth=[
                StatRow(type=d.type, state=d.state, jobs=d.jobs, oldest_runnable_seconds=d.oldest_runnable_seconds)
                for d in stats.depth
            ],
            oldest_queued_seconds=stats.oldest_queued_seconds,
            workers_recent=stats.workers_recent,
            pipelines_awaiting_approval=stats.awaiting_approval,
            policies=[
                TypePolicyOut(
                    type=p.type,
                    paused=p.paused,
                    global_concurrency=p.global_concurrency,
                    channel_concurrency=p.channel_concurrency,
                    rate_limit=p.rate_limit,
                    rate_period_seconds=p.rate_period_seconds,
                    running=p.running,
                    queued=p.queued,
                )
                for p in stats.policies
            ],
            paused_channels=stats.paused_channels,
        )
