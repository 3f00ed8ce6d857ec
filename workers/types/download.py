"""resource-download: fetch URLs into the job's artifact folder.

Payload:
    {"resources": [{"url": "https://…/a.png", "sha256": "…" (optional), "name": "a.png" (optional)}],
     "urls": ["https://…"]                 (shorthand for resources without checksum or name),
     "maxBytes": 104857600                 (per file; at most HARD_MAX_BYTES),
     "allow": ["image/*", "audio/*"]       (content types; default ALLOWED)}

Each file streams to a temporary name with progress as it comes, is checked against its
size cap, content type and checksum, and is renamed when complete. Transient failures
(connection errors, timeouts, 408/429/5xx) raise an ordinary error, so the worker retries
the job with backoff; a retry keeps the files already complete. Anything a retry cannot
fix (4xx, too big, a type not allowed, a checksum mismatch) raises PermanentError, and the
job's folder is removed: a failed download leaves no file behind.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from pgcue.core.artifacts import safe_name
from pgcue.workers.runtime.artifacts import store
from pgcue.workers.runtime.context import JobContext, PermanentError, Result
from pgcue.workers.runtime.registry import job_type

DEFAULT_MAX_BYTES = 500 * 1024 * 1024
HARD_MAX_BYTES = 4 * 1024 * 1024 * 1024
MAX_RESOURCES = 200
ALLOWED = (
    "image/*",
    "audio/*",
    "video/*",
    "font/*",
    "text/plain",
    "text/csv",
    "application/json",
    "application/pdf",
    "application/zip",
    "application/octet-stream",
)
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
CHUNK = 64 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Resource:
    def __init__(self, url: str, sha256: str | None, name: str) -> None:
        self.url = url
        self.sha256 = sha256
        self.name = name


def _resources(payload: Any) -> tuple[list[Resource], int, tuple[str, ...]]:
    if not isinstance(payload, dict):
        raise PermanentError('resource-download needs {"resources": [{"url": "…"}]} or {"urls": ["…"]}')
    raw: list[Any] = list(payload.get("resources") or []) + [{"url": u} for u in payload.get("urls") or []]
    if not raw:
        raise PermanentError("no URLs: give payload.resources or payload.urls")
    if len(raw) > MAX_RESOURCES:
        raise PermanentError(f"at most {MAX_RESOURCES} resources per job")
    try:
        max_bytes = int(payload.get("maxBytes", DEFAULT_MAX_BYTES))
    except (TypeError, ValueError):
        raise PermanentError("payload.maxBytes must be an integer") from None
    if not 0 < max_bytes <= HARD_MAX_BYTES:
        raise PermanentError(f"payload.maxBytes must be from 1 to {HARD_MAX_BYTES}")
    allow = payload.get("allow", ALLOWED)
    if not isinstance(allow, list | tuple) or not all(isinstance(a, str) for a in allow):
        raise PermanentError("payload.allow must be a list of content types such as image/* or text/plain")
    out: list[Resource] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        url = item.get("url") if isinstance(item, dict) else None
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise PermanentError(f"resources[{i}].url must be an http(s) URL")
        sha = item.get("sha256")
        if sha is not None and (not isinstance(sha, str) or not _SHA256.match(sha.lower())):
            raise PermanentError(f"resources[{i}].sha256 must be 64 hex digits")
        name = safe_name(str(item.get("name") or unquote(urlsplit(url).path.rsplit("/", 1)[-1])), f"file-{i + 1}")
        if name in names:
            name = f"{i + 1}-{name}"
        names.add(name)
        out.append(Resource(url, sha.lower() if sha else None, name))
    return out, max_bytes, tuple(a.lower() for a in allow)


def _allowed(content_type: str, allow: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(content_type, pattern) for pattern in allow)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


async def _fetch(
    ctx: JobContext,
    client: httpx.AsyncClient,
    res: Resource,
    max_bytes: int,
    allow: tuple[str, ...],
    report: Any,
) -> dict[str, Any]:
    artifacts = store()
    try:
        async with client.stream("GET", res.url) as response:
            status = response.status_code
            if status in TRANSIENT_STATUS:
                raise RuntimeError(f"{res.url}: HTTP {status} (transient; will retry)")
            if status >= 400:
                raise PermanentError(f"{res.url}: HTTP {status} {response.reason_phrase}")
            ctype = response.headers.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
            if not _allowed(ctype, allow):
                raise PermanentError(f"{res.url}: content type {ctype} is not allowed (allowed: {', '.join(allow)})")
            declared = response.headers.get("content-length")
            total = int(declared) if declared and declared.isdigit() else None
            if total is not None and total > max_bytes:
                raise PermanentError(f"{res.url}: {total} bytes is more than the limit of {max_bytes}")
            digest = hashlib.sha256()
            size = 0
            with artifacts.writing(ctx.id, res.name) as temp, temp.open("wb") as f:
                async for chunk in response.aiter_bytes(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise PermanentError(f"{res.url}: more than the limit of {max_bytes} bytes")
                    digest.update(chunk)
                    f.write(chunk)  # local disk, 64 KiB at a time: cheap enough for the loop
                    report(size, total)
                    await ctx.checkpoint()
                f.flush()
                sha = digest.hexdigest()
                if res.sha256 and sha != res.sha256:
                    raise PermanentError(f"{res.url}: sha256 is {sha}, expected {res.sha256}")
    except httpx.TransportError as exc:
        raise RuntimeError(f"{res.url}: {type(exc).__name__}: {exc} (transient; will retry)") from exc
    except httpx.InvalidURL as exc:
        raise PermanentError(f"{res.url}: {exc}") from None
    return {
        "url": res.url,
        "name": res.name,
        "key": artifacts.key(ctx.id, res.name),
        "size": size,
        "sha256": sha,
        "contentType": ctype,
        "verified": res.sha256 is not None,
    }


@job_type("resource-download")
async def download(ctx: JobContext) -> Result:
    resources, max_bytes, allow = _resources(ctx.payload)
    artifacts = store()
    artifacts.begin(ctx.id)
    files: list[dict[str, Any]] = []
    n = len(resources)
    try:
        async with httpx.AsyncClient(
            follow_redirects=True,
            max_redirects=5,
            timeout=httpx.Timeout(30.0, connect=10.0),
            headers={"user-agent": "pgcue-resource-download/0.1"},
        ) as client:
            for i, res in enumerate(resources):
                await ctx.checkpoint()
                done = artifacts.path(ctx.id, res.name)
                if done.exists():  # complete in an earlier attempt (only complete files have this name)
                    sha = _sha256_of(done)
                    if res.sha256 is None or sha == res.sha256:
                        files.append(
                            {
                                "url": res.url,
                                "name": res.name,
                                "key": artifacts.key(ctx.id, res.name),
                                "size": done.stat().st_size,
                                "sha256": sha,
                                "verified": res.sha256 is not None,
                                "reused": True,
                            }
                        )
                        continue

                def report(size: int, total: int | None, i: int = i, res: Resource = res) -> None:
                    fraction = size / total if total else 0.0
                    mb = size / 1_048_576
                    ctx.progress(100 * (i + min(fraction, 1.0)) / n, f"{res.name}: {mb:.1f} MiB ({i + 1} of {n})")

                files.append(await _fetch(ctx, client, res, max_bytes, allow, report))
                ctx.progress(100 * (i + 1) / n, f"{i + 1} of {n} downloaded")
    except PermanentError:
        artifacts.discard(ctx.id)
        raise
    return Result(
        {"files": files, "count": len(files), "bytes": sum(f["size"] for f in files)},
        files[0]["key"],  # the first file; all of them are in result.files
    )
