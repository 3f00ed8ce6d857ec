"""The Jobs panel's pages and fragments: a user's view of a channel (its jobs, counts,
recent results, latest proposals), one job's page, and the fragments panel.js fetches to
keep them live; every read is the API's own (pgcue.api.access: a caller sees its own
channels' jobs, another's job is 'not found' exactly like a missing one).

The page is rendered at a cursor of the event log taken before anything is read
(EventHub.now), and panel.js opens the channel's stream from that cursor
(`?lastEventId=`), so whatever changes after the read reaches the page: nothing is missed
between the render and the stream. A reconnecting EventSource resumes with Last-Event-ID.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.response import Redirect

from pgcue.api.access import caller_of, clean_param
from pgcue.api.jobs import decode_cursor, encode_cursor
from pgcue.api.panel.pages import PanelState, not_found_page, page, panel_problem
from pgcue.api.panel.render import job_view
from pgcue.core.errors import JobNotFound
from pgcue.core.models import Caller, Job
from pgcue.core.states import JobState, parse_state

PAGE = 50
RECENT = 6
HISTORY_OUTPUT = 500  # output chunks an expanded row starts with (the latest)
HISTORY_EVENTS = 200  # other events it starts with
SINCE = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}
SINCE_TEXT = {"": "any time", "1h": "the last hour", "24h": "the last 24 hours", "7d": "the last 7 days",
              "30d": "the last 30 days"}  # fmt: skip
MAX_IDS = 100


@dataclass(frozen=True)
class Filters:
    channel: str
    type: str | None = None
    state: str | None = None
    since: str | None = None
    q: str | None = None
    cursor: str | None = None

    def link(self, **changes: Any) -> str:
        f = replace(self, **changes)
        params = {
            "channelId": f.channel,
            "type": f.type,
            "state": f.state,
            "since": f.since,
            "q": f.q,
            "cursor": f.cursor,
        }
        return "/ui?" + urlencode({k: v for k, v in params.items() if v})

    def created_after(self) -> datetime | None:
        if not self.since:
            return None
        return datetime.now(UTC) - timedelta(seconds=SINCE[self.since])

    @property
    def live_inserts(self) -> bool:
        """New jobs appear at the top: on the first page of a list, not in a search."""
        return self.cursor is None and self.q is None

    def matches(self, job: Job) -> bool:
        if job.channel_id != self.channel:
            return False
        if self.q:  # a search (or one job's page) shows what it found, a run's stage job too
            return str(job.id).replace("-", "").startswith(self.q.replace("-", "").lower())
        if job.parent_id is not None:
            return False
        if self.type and job.type != self.type:
            return False
        if self.state and job.state != self.state:
            return False
        after = self.created_after()
        return after is None or job.created_at >= after


def _param(request: Request[Any, Any, Any], name: str, limit: int = 200) -> str | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    clean_param(value, name)
    if len(value) > limit:
        raise panel_problem(400, f"{name} is at most {limit} characters", field=name)
    return value


async def channels_for(state: PanelState, caller: Caller) -> list[str]:
    """The channels a caller may pick: its own, or (an admin) every channel."""
    if caller.admin:
        return [c.id for c in await state.queue.fleet.channels()]
    return sorted(caller.channels)


async def filters_of(request: Request[Any, Any, Any], panel: PanelState, caller: Caller) -> tuple[Filters, list[str]]:
    channels = await channels_for(panel, caller)
    channel = _param(request, "channelId")
    if channel is None:
        if not channels:
            return Filters(channel=""), channels
        channel = channels[0]
    elif not caller.sees(channel):
        raise panel_problem(404, f"channel {channel!r} is not one of your channels", field="channelId")
    job_type = _param(request, "type", 63)
    if job_type is not None and job_type not in await panel.queue.types.names():
        raise panel_problem(400, f"there is no job type {job_type[:63]!r} (see `pgcue types`)", field="type")
    state_text = _param(request, "state", 20)
    state = None
    if state_text is not None:
        try:
            state = parse_state(state_text).value
        except ValueError:
            raise panel_problem(
                400, f"state must be one of {', '.join(s.value for s in JobState)}", field="state"
            ) from None
    since = _param(request, "since", 10)
    if since is not None and since not in SINCE:
        raise panel_problem(400, f"since must be one of {', '.join(SINCE)}", field="since")
    q = _param(request, "q", 60)
    cursor = _param(request, "cursor")
    if cursor is not None:
        decode_cursor(cursor)  # a 400 naming it when this API did not make it
    return Filters(channel, job_type, state, since, q.strip() if q else None, cursor), channels


async def _search(panel: PanelState, caller: Caller, f: Filters) -> list[Job]:
    """Jobs whose id is, or starts with, the search text (a pasted id, or the 8 digits a row shows)."""
    assert f.q is not None
    text = f.q.lower()
    try:
        job_id = uuid.UUID(text)
    except ValueError:
        try:
            return await panel.queue.find_by_id_prefix(text, [f.channel], PAGE)
        except ValueError:
            raise panel_problem(
                400, "search by id: paste a job id, or at least its first 8 characters", field="q"
            ) from None
    try:
        job = await panel.queue.get(job_id)
    except JobNotFound:
        return []
    return [job] if caller.sees(job.channel_id) and job.channel_id == f.channel else []


async def _list(panel: PanelState, caller: Caller, f: Filters) -> tuple[list[Job], str | None]:
    if not f.channel:
        return [], None
    if f.q:
        return await _search(panel, caller, f), None
    jobs = await panel.queue.list_jobs(
        channels=[f.channel],
        type=f.type,
        state=f.state,
        before=decode_cursor(f.cursor) if f.cursor else None,
        limit=PAGE + 1,
        created_after=f.created_after(),
        include_children=False,
    )
    more = len(jobs) > PAGE
    jobs = jobs[:PAGE]
    return jobs, encode_cursor(jobs[-1]) if more else None


async def views_of(panel: PanelState, jobs: list[Job]) -> list[Any]:
    """Rows for jobs, each pipeline run with its stages."""
    runs = [j.id for j in jobs if j.type == "orchestrate"]
    stages = await panel.queue.stages.of_many(runs) if runs else {}
    return [job_view(j, stages.get(j.id)) for j in jobs]


async def _summary(panel: PanelState, f: Filters) -> dict[str, Any]:
    if not f.channel:
        return {"counts": None, "recent": [], "proposals": None}
    counts = await panel.snapshots.channel(f.channel)
    recent = await panel.queue.recent([f.channel], RECENT, include_children=False)
    latest = await panel.queue.latest_completed(f.channel, "proposals")
    return {
        "counts": counts,
        "recent": [job_view(j) for j in recent],
        "proposals": None if latest is None else job_view(latest),
    }


@get("/", include_in_schema=False, sync_to_thread=False)
def home() -> Redirect:
    return Redirect("/ui", status_code=303)


@get("/ui", include_in_schema=False)
async def jobs_page(request: Request[Any, Any, Any], state: State) -> Response[str]:
    """A user's view of one channel: counts, filters, bulk actions, recent results, the
    latest proposals, and the jobs newest first."""
    panel: PanelState = state.panel
    caller = caller_of(request)
    cursor = await state.hub.now()  # before any read: the stream starts here
    f, channels = await filters_of(request, panel, caller)
    jobs, next_cursor = await _list(panel, caller, f)
    types = await panel.queue.types.names()
    return page(
        request,
        "jobs.html",
        title=f"Jobs · {f.channel}" if f.channel else "Jobs",
        f=f,
        channels=channels,
        types=types,
        since_text=SINCE_TEXT,
        rows=await views_of(panel, jobs),
        next_cursor=next_cursor,
        stream_cursor=cursor.encode(),
        **await _summary(panel, f),
    )


@get("/ui/jobs/{job_id:str}", include_in_schema=False)
async def job_page(request: Request[Any, Any, Any], state: State, job_id: str) -> Response[str]:
    """One job, expanded. Another user's job is the same page as a missing one."""
    panel: PanelState = state.panel
    caller = caller_of(request)
    cursor = await state.hub.now()
    job = await _visible(panel, caller, job_id)
    if job is None:
        return not_found_page(request)
    (view,) = await views_of(panel, [job])
    return page(
        request,
        "job.html",
        title=f"{job.type} {view.short}",
        f=Filters(channel=job.channel_id, q=str(job.id)),
        row=view,
        stream_cursor=cursor.encode(),
        **await _detail_context(panel, job),
    )


async def _visible(panel: PanelState, caller: Caller, job_id: str) -> Job | None:
    try:
        job = await panel.queue.get(uuid.UUID(job_id))
    except (ValueError, JobNotFound):
        return None
    return job if caller.sees(job.channel_id) else None


async def _detail_context(panel: PanelState, job: Job) -> dict[str, Any]:
    output = await panel.queue.events.history(job.id, output=True, limit=HISTORY_OUTPUT)
    events = await panel.queue.events.history(job.id, output=False, limit=HISTORY_EVENTS)
    parent = None
    if job.parent_id is not None:
        try:
            parent = await panel.queue.get(job.parent_id)
        except JobNotFound:
            parent = None
    return {
        "output": output,
        "output_capped": len(output) >= HISTORY_OUTPUT,
        "events": events,
        "events_capped": len(events) >= HISTORY_EVENTS,
        "parent": parent,
    }


@get("/ui/fragments/rows", include_in_schema=False)
async def rows_fragment(request: Request[Any, Any, Any], state: State) -> Response[str]:
    """The rows of some jobs as the list shows them now (panel.js asks after a job's status
    changed). A job the list does not show (another channel's, a run's stage job, one the
    filter no longer matches, or a missing one) comes back as an empty marker, with its
    run's id for a stage job so that the run's row is refreshed instead."""
    panel: PanelState = state.panel
    caller = caller_of(request)
    f, _ = await filters_of(request, panel, caller)
    raw = (_param(request, "ids", 4000) or "").split(",")
    ids: list[uuid.UUID] = []
    for text in raw[:MAX_IDS]:
        try:
            ids.append(uuid.UUID(text.strip()))
        except ValueError:
            continue
    found = {j.id: j for j in await panel.queue.get_many(ids)} if ids else {}
    shown = [j for j in found.values() if caller.sees(j.channel_id) and f.matches(j)]
    views = {v.job.id: v for v in await views_of(panel, shown)}
    absent = {}
    for i in ids:
        if i not in views:
            job = found.get(i)
            visible = job is not None and caller.sees(job.channel_id)
            absent[str(i)] = str(job.parent_id) if visible and job and job.parent_id else ""
    return page(request, "fragments/rows.html", rows=list(views.values()), absent=absent, f=f, fragment=True)


@get("/ui/fragments/detail/{job_id:str}", include_in_schema=False)
async def detail_fragment(request: Request[Any, Any, Any], state: State, job_id: str) -> Response[str]:
    """What an expanded row shows: output, history, payload, result, artifact, stages."""
    panel: PanelState = state.panel
    job = await _visible(panel, caller_of(request), job_id)
    if job is None:
        raise panel_problem(404, "job not found")
    (view,) = await views_of(panel, [job])
    return page(request, "fragments/detail.html", row=view, fragment=True, **await _detail_context(panel, job))


@get("/ui/fragments/summary", include_in_schema=False)
async def summary_fragment(request: Request[Any, Any, Any], state: State) -> Response[str]:
    """The channel's counts, recent results and latest proposals (refreshed by panel.js)."""
    panel: PanelState = state.panel
    f, _ = await filters_of(request, panel, caller_of(request))
    return page(request, "fragments/summary.html", f=f, fragment=True, **await _summary(panel, f))


route_handlers = [home, jobs_page, job_page, rows_fragment, detail_fragment, summary_fragment]
