"""GET /api/jobs/{id}/artifact: a job's file, to whoever may see the job, with range requests
(a browser seeks in audio and video with them).

A file is whatever its job wrote, which a tenant's payload can steer (a download of an
HTML page, an SVG). So no artifact is ever a page of this origin: every answer carries
`X-Content-Type-Options: nosniff` and a sandboxing Content-Security-Policy, and types a
browser would run (HTML, SVG, XML, JavaScript ...) are sent as attachments."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import anyio
from litestar import Request, get
from litestar.datastructures import State
from litestar.params import Parameter
from litestar.response import Response, Stream

from pgcue.api.access import caller_of, job_id_of, visible_job
from pgcue.api.jobs import JobIdPath
from pgcue.api.problems import ApiProblem, not_found, responses
from pgcue.core.artifacts import LocalArtifacts, content_type, safe_name
from pgcue.core.errors import JobNotFound
from pgcue.core.models import Job
from pgcue.core.queue import Queue

CHUNK = 256 * 1024
# What a browser shown the file inline could run as a page of this origin.
ACTIVE_TYPES = (
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/xml",
    "application/xml",
    "text/javascript",
    "application/javascript",
    "application/ecmascript",
    "text/xsl",
    "application/pdf",
)
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) byte of a single `bytes=` range; None to send the whole file.
    Raises ValueError when the range cannot be satisfied."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None:
        return None  # several ranges or another unit: RFC 9110 lets us send it all
    first, last = m.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        n = int(last)
        if n == 0:
            raise ValueError("empty suffix range")
        return max(0, size - n), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise ValueError("range outside the file")
    return start, end


async def _read(path: Path, start: int, length: int) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        await f.seek(start)
        left = length
        while left > 0:
            chunk = await f.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk


async def _a_childs(queue: Queue, run: Job, key: str) -> bool:
    """Whether `key` is a file of one of the pipeline run's own stage jobs: a run's
    resultPath is its last stage's artifact, served under the run's id."""
    head, _, _ = key.partition("/")
    try:
        child = await queue.get(uuid.UUID(head))
    except (ValueError, JobNotFound):
        return False
    return child.parent_id == run.id and child.channel_id == run.channel_id


def is_active(media_type: str) -> bool:
    base = media_type.split(";", 1)[0].strip().lower()
    return base in ACTIVE_TYPES or base.endswith(("+xml", "/html"))


@get(
    "/api/jobs/{job_id:str}/artifact",
    security=[{"bearer": []}],
    tags=["jobs"],
    summary="The job's artifact (resultPath), or another file of the job's with ?name=; supports Range",
    responses=responses(400, 404),
)
async def job_artifact(
    request: Request[Any, Any, Any],
    state: State,
    job_id: JobIdPath,
    name: Annotated[str | None, Parameter(query="name", min_length=1, max_length=200)] = None,
) -> Response[Any]:
    job = await visible_job(state.queue, caller_of(request), job_id_of(job_id))
    if name is not None:
        key = f"{job.id}/{safe_name(name)}"
    elif job.result_path:
        key = job.result_path
    else:
        raise not_found(f"job {job.id} has no artifact (it is {job.state}; resultPath is empty)")
    if not key.startswith(f"{job.id}/") and not await _a_childs(state.queue, job, key):
        raise not_found(f"job {job.id} has no artifact in the store")
    store = LocalArtifacts(state.settings.artifacts_dir)
    path = store.local_path(key)
    if path is None:
        raise not_found(f"artifact {key} is not in the store (removed, or the job is not finished)")
    try:
        size = path.stat().st_size
    except FileNotFoundError:  # removed between the lookup and now (its job was deleted)
        raise not_found(f"artifact {key} is not in the store (removed, or the job is not finished)") from None
    media_type = content_type(path.name)
    disposition = "attachment" if is_active(media_type) else "inline"
    headers = {
        "accept-ranges": "bytes",
        "content-disposition": f'{disposition}; filename="{path.name}"',
        "cache-control": "private, max-age=3600",
        "x-content-type-options": "nosniff",
        "content-security-policy": "default-src 'none'; media-src 'self'; img-src 'self'; sandbox",
    }
    try:
        wanted = _range(request.headers.get("range"), size)
    except ValueError:
        problem = ApiProblem(416, "range-not-satisfiable", "Range not satisfiable", f"the file has {size} bytes")
        problem.headers["content-range"] = f"bytes */{size}"
        raise problem from None
    start, end = wanted if wanted is not None else (0, size - 1)
    length = max(0, end - start + 1)
    headers["content-length"] = str(length)
    status = 200
    if wanted is not None:
        status = 206
        headers["content-range"] = f"bytes {start}-{end}/{size}"
    return Stream(_read(path, start, length), status_code=status, media_type=media_type, headers=headers)


route_handlers = [job_artifact]
