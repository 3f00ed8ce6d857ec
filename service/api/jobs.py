"""Job routes: parse, authorise, call the queue, shape the answer."""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from litestar import Controller, Request, delete, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.handlers import BaseRouteHandler
from litestar.params import Parameter
from pgcue.api.auth import authenticated, caller_of, resolve_caller
from pgcue.api.problems import ApiProblem, bad_request, forbidden_plan, not_found, responses
from pgcue.api.schemas import Cleared, JobEnvelope, JobList, JobOut, JobPage, NewJobBody, StatRow, Stats, TypePolicy
from pgcue.core.auth import Caller
from pgcue.core.batching import EnqueueBatcher
from pgcue.core.errors import JobNotFound, UnknownJobType
from pgcue.core.models import Job, NewJob
from pgcue.core.queue import Queue
from pgcue.core.queue.stages import Pipelines

MAX_LIMIT = 200
RECENT = 6  # seed 001: the six most recently completed results
WORKERS_RECENT_SECONDS = 60.0
# Seed INDEX: where products disagree pgcue accepts both names of a state.
STATE_ALIASES = {"submitted": "queued", "succeeded": "completed"}
StateFilter = Literal["queued", "running", "completed", "failed", "cancelled", "submitted", "succeeded"]


class TypeCache:
    """Job type → plan, from pgcue.job_types; refreshed on a miss at most once a second."""

    def __init__(self, queue: Queue, ttl: float = 30.0) -> None:
        self.queue = queue
        self.ttl = ttl
        self._plans: dict[str, str] = {}
        self._loaded = 0.0

    async def plan(self, name: str) -> str | None:
        now = time.monotonic()
        if now - self._loaded > self.ttl or (name not in self._plans and now - self._loaded > 1.0):
            self._plans = {t.name: t.plan for t in await self.queue.job_types()}
            self._loaded = now
        return self._plans.get(name)


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard (for the long-lived SSE routes): runs before the body is read, so an anonymous
    request is 401 whatever it sends. Request/response routes use the cheaper
    `authenticated` middleware instead."""
    connection.state.caller = await resolve_caller(connection, connection.app.state)  # type: ignore[arg-type]


def channel_scope(caller: Caller, channel_id: str | None) -> list[str] | None:
    """Channels a query may read: the one asked for (if the caller's), else all of the
    caller's; None means every channel (an admin)."""
    if channel_id is not None:
        if not caller.sees(channel_id):
            raise not_found(f"channel {channel_id!r} is not one of your channels (ask an operator to create it)")
        return [channel_id]
    return None if caller.admin else sorted(caller.channels)


async def visible_job(queue: Queue, caller: Caller, job_id: uuid.UUID) -> Job:
    """The job, if the caller may see it; another user's job is 'not found', like a missing one."""
    job = await queue.get(job_id)
    if not caller.sees(job.channel_id):
        raise JobNotFound(job_id)
    return job


def encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        created, _, job_id = raw.partition("|")
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("naive time")
        return when, uuid.UUID(job_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_request(
            "bad-cursor", "Bad cursor", "cursor is not a nextCursor this API returned; drop it to start from the top"
        ) from None


def _queue(state: State) -> Queue:
    queue: Queue = state.queue
    return queue


ChannelQuery = Annotated[
    str | None, Parameter(query="channelId", min_length=1, max_length=200, description="one of your channels")
]


class JobsController(Controller):
    path = "/api"
    tags = ("jobs",)
    middleware = (authenticated,)
    security = ({"bearer": []},)
    dependencies = {"queue": Provide(_queue, sync_to_thread=False)}  # noqa: RUF012

    @post(
        "/jobs",
        status_code=201,
        summary="Enqueue a job",
        description="Enqueue a job in one of your channels. A repeated Idempotency-Key returns the first job "
        "(no duplicate); reusing a key for a different job is 409. Bodies over 1 MiB are refused (413).",
        responses=responses(400, 403, 404, 409, 413, 422),
    )
    async def enqueue(
        self,
        request: Request[Any, Any, Any],
        data: NewJobBody,
        queue: Queue,
        state: State,
        idempotency_key: Annotated[
            str | None,
            Parameter(header="Idempotency-Key", min_length=1, max_length=200, description="one job per key"),
        ] = None,
    ) -> JobEnvelope:
        caller = caller_of(request)
        plan = await state.types.plan(data.type)
        if plan is None:
            raise UnknownJobType(data.type)
        channel_scope(caller, data.channel_id)
        if not caller.may_use(plan):
            raise forbidden_plan(data.type, caller.plan, plan)
        owner = caller.user_id
        if caller.admin:
            row = await queue.sql.fetchrow(queue.pool, "find_channel_owner", data.channel_id)
            owner = row["owner_id"] if row else caller.user_id
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
            )
        return JobEnvelope(job=JobOut.of(job))

    @get(
        "/jobs",
        summary="List jobs, newest first",
        description="Keyset pagination: pass the answer's nextCursor as cursor for the next page.",
        responses=responses(400, 404),
    )
    async def list_jobs(
        self,
        request: Request[Any, Any, Any],
        queue: Queue,
        channel_id: ChannelQuery = None,
        job_type: Annotated[str | None, Parameter(query="type", min_length=1, max_length=63)] = None,
        job_state: Annotated[StateFilter | None, Parameter(query="state")] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 50,
        cursor: Annotated[str | None, Parameter(min_length=1, max_length=200)] = None,
    ) -> JobPage:
        scope = channel_scope(caller_of(request), channel_id)
        before = decode_cursor(cursor) if cursor else None
        if scope == []:
            return JobPage(jobs=[], next_cursor=None)
        created, last_id = before if before else (None, None)
        state = STATE_ALIASES.get(job_state, job_state) if job_state else None
        rows = await queue.sql.fetch(
            queue.pool, "list_jobs_in_channels", scope, job_type, state, created, last_id, limit + 1
        )
        jobs = [Job.from_row(r) for r in rows]
        more = len(jobs) > limit
        jobs = jobs[:limit]
        return JobPage(jobs=[JobOut.of(j) for j in jobs], next_cursor=encode_cursor(jobs[-1]) if more else None)

    @get(
        "/jobs/recent",
        summary="The six most recently completed jobs, with their results",
        responses=responses(400, 404),
    )
    async def recent(self, request: Request[Any, Any, Any], queue: Queue, channel_id: ChannelQuery = None) -> JobList:
        scope = channel_scope(caller_of(request), channel_id)
        if scope == []:
            return JobList(jobs=[])
        rows = await queue.sql.fetch(queue.pool, "recent_completed_jobs", scope, RECENT)
        return JobList(jobs=[JobOut.of(Job.from_row(r)) for r in rows])

    @get("/jobs/{job_id:uuid}", summary="One job (seed 003's shape)", responses=responses(400, 404))
    async def get_job(self, request: Request[Any, Any, Any], queue: Queue, job_id: uuid.UUID) -> JobEnvelope:
        return JobEnvelope(job=JobOut.of(await visible_job(queue, caller_of(request), job_id)))

    @post(
        "/jobs/{job_id:uuid}/cancel",
        status_code=200,
        summary="Cancel a job",
        description="A queued job is cancelled at once; a running one gets cancelRequested and stops at its next "
        "checkpoint (its stream then shows job:status cancelled). A finished job is 409.",
        responses=responses(400, 404, 409),
    )
    async def cancel(self, request: Request[Any, Any, Any], queue: Queue, job_id: uuid.UUID) -> JobEnvelope:
        await visible_job(queue, caller_of(request), job_id)
        return JobEnvelope(job=JobOut.of(await queue.cancel(job_id)))

    @post(
        "/jobs/{job_id:uuid}/retry",
        status_code=200,
        summary="Retry a failed or cancelled job",
        responses=responses(400, 404, 409),
    )
    async def retry(self, request: Request[Any, Any, Any], queue: Queue, job_id: uuid.UUID) -> JobEnvelope:
        await visible_job(queue, caller_of(request), job_id)
        return JobEnvelope(job=JobOut.of(await queue.retry(job_id)))

    @delete(
        "/jobs/{job_id:uuid}",
        summary="Delete a finished job and its events",
        responses=responses(400, 404, 409),
    )
    async def delete_job(self, request: Request[Any, Any, Any], queue: Queue, job_id: uuid.UUID) -> None:
        await visible_job(queue, caller_of(request), job_id)
        await queue.delete(job_id)

    @post(
        "/channels/{channel_id:str}/clear",
        status_code=200,
        summary="Delete every finished job of a channel",
        description="Queued and running jobs stay. Returns how many jobs were deleted.",
        responses=responses(400, 404),
    )
    async def clear(self, request: Request[Any, Any, Any], queue: Queue, channel_id: str) -> Cleared:
        if len(channel_id) > 200:
            raise not_found("channel ids are at most 200 characters")
        channel_scope(caller_of(request), channel_id)
        return Cleared(channel_id=channel_id, deleted=await queue.clear_finished(channel_id))

    @get(
        "/stats",
        summary="Depth per type and state, oldest queued job's age, workers seen recently",
        description="Over the caller's channels (every channel for an admin key).",
        responses=responses(400),
    )
    async def stats(self, request: Request[Any, Any, Any], queue: Queue) -> Stats:
        scope = channel_scope(caller_of(request), None)
        rows = await queue.sql.fetch(queue.pool, "channel_job_stats", scope, WORKERS_RECENT_SECONDS)
        workers = int(rows[0]["workers"]) if rows else 0
        depth = [
            StatRow(
                type=r["type"],
                state=r["state"],
                jobs=int(r["jobs"]),
                oldest_runnable_seconds=r["oldest_runnable_seconds"],
            )
            for r in rows
            if r["type"] is not None
        ]
        ages = [d.oldest_runnable_seconds for d in depth if d.oldest_runnable_seconds is not None]
        paused = await Pipelines(queue).stats(scope)
        policies = await queue.sql.fetch(queue.pool, "list_type_policies")
        channels = await queue.paused_channels()
        return Stats(
            depth=depth,
            oldest_queued_seconds=max(ages) if ages else None,
            workers_recent=workers,
            pipelines_awaiting_approval=int(paused["awaiting_approval"]) if paused else 0,
            policies=[
                TypePolicy(
                    type=p["type"],
                    paused=p["paused"],
                    global_concurrency=p["global_concurrency"],
                    channel_concurrency=p["channel_concurrency"],
                    rate_limit=p["rate_limit"],
                    rate_period_seconds=p["rate_period_seconds"],
                    running=int(p["running"]),
                    queued=int(p["queued"]),
                )
                for p in policies
            ],
            paused_channels=[c["channel_id"] for c in channels if scope is None or c["channel_id"] in scope],
        )
