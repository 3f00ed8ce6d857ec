"""Who may see what: the caller of a request, the channels a query may read, the jobs a
caller may see, and the parsing of ids and text a route takes from the path or query.

Another user's job is 'not found', exactly like a missing one: nothing in an answer tells
a caller whether a job it may not see exists.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request

from pgcue.api.problems import ApiProblem, not_a_job_id, not_found
from pgcue.core.errors import JobNotFound
from pgcue.core.models import Caller, Job
from pgcue.core.queue import Queue


def caller_of(request: Request[Any, Any, Any]) -> Caller:
    """The caller the auth middleware resolved for this request."""
    caller: Caller = request.scope["state"]["caller"]
    return caller


def job_id_of(text: str) -> uuid.UUID:
    """A job id from a path; a 404 saying why for anything that is not a UUID."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise not_a_job_id(text) from None


def clean_param(value: str | None, field: str) -> str | None:
    """A text parameter PostgreSQL can take: a NUL, or text that is not valid Unicode, is a
    400 naming the parameter."""
    if value is None:
        return None
    if "\x00" in value:
        raise ApiProblem(400, "invalid-request", "Invalid request", f"{field} holds a NUL character", field=field)
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ApiProblem(
            400, "invalid-request", "Invalid request", f"{field} is not valid Unicode", field=field
        ) from None
    return value


def channel_scope(caller: Caller, channel_id: str | None) -> list[str] | None:
    """Channels a query may read: the one asked for (if the caller's), else all of the
    caller's; None means every channel (an admin)."""
    if channel_id is not None:
        clean_param(channel_id, "channelId")
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
