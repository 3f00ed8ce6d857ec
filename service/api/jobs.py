"""Job routes: parse, authorise, call the queue façade, shape the answer."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime
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
from pgcue.core.states import JobState, StateFilter, WaitingFor, parse_state
from pgcue.core.wire import (
    BulkBody,
    BulkResult,
    Cleared,
    JobEnvelope,
    JobList,
    JobPage,
    NewJobBody,
    StatRow,
    Stats,
    TypePolicyOut,
    iso_ms,
)

MAX_LIMIT = 200
BULK_BATCH = 500  # jobs per statement of a bulk action: each batch is one short transaction
BULK_COUNT_CAP = 100_000  # a dry run counts this many per state at most
BULK_STATES: dict[str, tuple[JobState, ...]] = {
    "retry": (JobState.FAILED, JobState.CANCELLED),
    "cancel": (JobState.QUEUED, JobState.RUNNING),
    "delete": (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED),
}
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


def time_param(value: datetime | None, field: str) -> datetime | None:
    """A time from a query or body: one without a zone is UTC; out of range is a 400."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return check_run_at(value, field)
    except InvalidJob as exc:
        raise bad_request("invalid-request", "Invalid request", str(exc), field=field) from None


def earliest(cursor: tuple[datetime, uuid.UUID] | None, before: datetime | None) -> tuple[datetime, uuid.UUID] | None:
    """The keyset bound of a page: the cursor, or jobs created before `before`, whichever
    is lower."""
    if before is None:
        return cursor
    bound = (before, uuid.UUID(int=0))  # (created_at, id) < (before, 0): created before it
    return bound if cursor is None or bound < cursor else cursor


def parent_id_of(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise bad_request(
            "invalid-request", "Invalid request", "parentId must be a pipeline run's id (a UUID)", field="parentId"
        ) from None


def matches(
    job: Job,
    job_type: str | None,
    job_state: str | None,
    after: datetime | None,
    waiting_for: WaitingFor | None,
) -> bool:
    """Whether a job passes the list filters (for a run's few children, read whole)."""
    if job_type is not None and job.type != job_type:
        return False
    if job_state is not None and job.state != parse_state(job_state):
        return False
    if after is not None and job.created_at < after:
        return False
    return waiting_for is None or (job.state == JobState.QUEUED and job.waiting_for == waiting_for)


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
        parent_id: Annotated[
            str | None,
            Parameter(query="parentId", min_length=1, max_length=100, description="a run's id: its stage jobs"),
        ] = None,
        include_children: Annotated[
            bool, Parameter(query="includeChildren", description="false: leave pipeline runs' stage jobs out")
        ] = True,
        waiting_for: Annotated[
            WaitingFor | None,
            Parameter(query="waitingFor", description="queued jobs waiting for this (children, approval, provider)"),
        ] = None,
        created_after: Annotated[datetime | None, Parameter(query="createdAfter", description="ISO 8601")] = None,
        created_before: Annotated[datetime | None, Parameter(query="createdBefore", description="ISO 8601")] = None,
    ) -> JobPage:
        queue: Queue = state.queue
        scope = channel_scope(caller_of(request), channel_id)
        clean_param(job_type, "type")
        before = decode_cursor(cursor) if cursor else None
        after = time_param(created_after, "createdAfter")
        before = earliest(before, time_param(created_before, "createdBefore"))
        if scope == []:
            return JobPage(jobs=[], next_cursor=None)
        if parent_id is not None:
            jobs = await queue.children(parent_id_of(parent_id), scope, before=before, limit=limit + 1)
            jobs = [j for j in jobs if matches(j, job_type, job_state, after, waiting_for)]
        else:
            jobs = await queue.list_jobs(
                channels=scope,
                type=job_type,
                state=parse_state(job_state).value if job_state else None,
                before=before,
                limit=limit + 1,
                created_after=after,
                include_children=include_children,
                waiting_for=None if waiting_for is None else waiting_for.value,
            )
        more = len(jobs) > limit
        jobs = jobs[:limit]
        return JobPage(jobs=[j.to_wire() for j in jobs], next_cursor=encode_cursor(jobs[-1]) if more else None)

    @get(
        "/jobs/recent",
        summary="The six most recently completed jobs, with their results",
        description="Pipeline runs' stage jobs are left out (their run is shown) unless includeChildren=true.",
        responses=responses(400, 404),
    )
    async def recent(
        self,
        request: Request[Any, Any, Any],
        state: State,
        channel_id: ChannelQuery = None,
        include_children: Annotated[bool, Parameter(query="includeChildren")] = False,
    ) -> JobList:
        queue: Queue = state.queue
        scope = channel_scope(caller_of(request), channel_id)
        if scope == []:
            return JobList(jobs=[])
        jobs = await queue.recent(scope, RECENT, include_children=include_children)
        return JobList(jobs=[j.to_wire() for j in jobs])

    @post(
        "/jobs/bulk",
        status_code=200,
        summary="Retry, cancel or delete every job of a channel that a filter matches",
        description="Not just a page: every match, newest first, at most `limit` per call (nextCursor goes on). "
        "dryRun counts the matches first, for a confirmation that says how many; pass its asOf as createdBefore "
        "so that jobs enqueued since are left alone. retry applies to failed and cancelled jobs, cancel to queued "
        "and running ones, delete to finished ones; a pipeline run's stage jobs go with their run unless "
        "includeChildren.",
        responses=responses(400, 404),
    )
    async def bulk(self, request: Request[Any, Any, Any], state: State, data: BulkBody) -> BulkResult:
        queue: Queue = state.queue
        clean_param(data.type, "type")
        channel_scope(caller_of(request), data.channel_id)
        channel = data.channel_id
        applies = BULK_STATES[data.action]
        if data.state is not None:
            wanted = parse_state(data.state)
            if wanted not in applies:
                raise bad_request(
                    "state-not-applicable",
                    "The action does not apply to this state",
                    f"{data.action} applies to {' or '.join(applies)} jobs, not {data.state} ones",
                    field="state",
                )
            applies = (wanted,)
        after = time_param(data.created_after, "createdAfter")
        before_time = time_param(data.created_before, "createdBefore")
        as_of = datetime.now(UTC)
        types = None if data.type is None else [data.type]
        if data.dry_run:
            counts = await queue.count_jobs(
                channel,
                list(applies),
                types=types,
                created_after=after,
                created_before=before_time,
                include_children=data.include_children,
                cap=BULK_COUNT_CAP,
            )
            return BulkResult(
                action=data.action,
                matched=sum(counts.values()),
                changed=0,
                capped=any(n >= BULK_COUNT_CAP for n in counts.values()),
                next_cursor=None,
                as_of=iso_ms(as_of) or "",
            )
        before = earliest(decode_cursor(data.cursor) if data.cursor else None, before_time)
        act = {"retry": queue.retry_many, "cancel": queue.cancel_many, "delete": queue.delete_many}[data.action]
        matched = changed = 0
        last: Job | None = None
        more = False
        while matched < data.limit:
            take = min(BULK_BATCH, data.limit - matched)
            batch = await queue.list_jobs(
                channels=[channel],
                types=types,
                states=list(applies),
                before=before,
                limit=take,
                created_after=after,
                include_children=data.include_children,
            )
            if not batch:
                break
            changed += len(await act([j.id for j in batch]))
            matched += len(batch)
            last = batch[-1]
            before = (last.created_at, last.id)
            more = len(batch) == take
            if not more:
                break
        return BulkResult(
            action=data.action,
            matched=matched,
            changed=changed,
            capped=False,
            next_cursor=encode_cursor(last) if more and last is not None else None,
            as_of=iso_ms(as_of) or "",
        )

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
