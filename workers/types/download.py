"""resource-download: fetch URLs into the job's artifact folder.

Payload:
    {"resources": [{"url": "https://…/a.png", "sha256": "…" (optional), "name": "a.png" (optional)}],
     "urls": ["https://…"]                 (shorthand for resources without checksum or name),
     "maxBytes": 104857600                 (per file; at most HARD_MAX_BYTES),
     "allow": ["image/*", "audio/*"]       (content types; default ALLOWED)}

URLs come from tenants, so every fetch goes through the safe fetcher (pgcue.workers.types.
fetch): each connection, the first and every redirect hop, goes only to a public address,
checked after resolution and pinned to it; internal targets (loopback, private, link-local,
CGNAT, metadata services ...) are refused with one text whatever the reason, so a job
cannot map the network; errors never show credentials or query strings; a file must come
within PGCUE_FETCH_TOTAL_TIMEOUT and at PGCUE_FETCH_MIN_RATE or faster; an operator opens
named internal hosts with PGCUE_FETCH_ALLOW_HOSTS. A cancel stops a download at once,
whatever the server does (ctx.cancellable).

Each file streams to a temporary name with progress as it comes, is checked against its
size cap, content type and checksum, and is published when complete. Transient failures
(connection errors, timeouts, a server too slow, 408/429/5xx) raise an ordinary error, so
the worker retries the job with backoff; a retry keeps the files already complete.
Anything a retry cannot fix (a refused address, 4xx, too big, a type not allowed, a
checksum mismatch) raises PermanentError, and the job's folder is removed: a failed
download leaves no file behind.
"""

from __future__ import annotations

import fnmatch
import hashlib
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

import msgspec

from pgcue.core.artifacts import safe_name
from pgcue.workers.runtime.context import JobCancelled, JobContext, PermanentError, Result
from pgcue.workers.runtime.registry import job_type
from pgcue.workers.types.fetch import (
    AddressNotAllowed,
    BadStatus,
    FetchError,
    FetchSettings,
    InvalidURL,
    ResponseTooLarge,
    SafeFetcher,
    TooManyRedirects,
    redact,
)

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
PERMANENT = (AddressNotAllowed, InvalidURL, TooManyRedirects, ResponseTooLarge)
SETTINGS = FetchSettings.from_env()  # read (and checked) when a worker loads the type
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern=r"^[hH][tT][tT][pP][sS]?://")]


class ResourceIn(msgspec.Struct, kw_only=True):
    url: Url
    sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-fA-F]{64}$")] | None = None
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


class DownloadPayload(msgspec.Struct, rename="camel", kw_only=True):
    resources: Annotated[list[ResourceIn], msgspec.Meta(max_length=MAX_RESOURCES)] = msgspec.field(default_factory=list)
    urls: Annotated[list[Url], msgspec.Meta(max_length=MAX_RESOURCES)] = msgspec.field(default_factory=list)
    max_bytes: Annotated[int, msgspec.Meta(ge=1, le=HARD_MAX_BYTES)] = DEFAULT_MAX_BYTES
    allow: Annotated[list[Annotated[str, msgspec.Meta(max_length=100)]], msgspec.Meta(max_length=50)] = msgspec.field(
        default_factory=lambda: list(ALLOWED)
    )


class Resource:
    def __init__(self, url: str, sha256: str | None, name: str) -> None:
        self.url = url
        self.sha256 = sha256
        self.name = name

    @property
    def shown(self) -> str:
        """The URL as errors and results show it: no credentials, no query."""
        return redact(self.url)


def _resources(ctx: JobContext) -> tuple[list[Resource], int, tuple[str, ...]]:
    payload = ctx.payload_as(DownloadPayload)
    raw = [(r.url, r.sha256, r.name) for r in payload.resources] + [(u, None, None) for u in payload.urls]
    if not raw:
        raise PermanentError("no URLs: give payload.resources or payload.urls")
    if len(raw) > MAX_RESOURCES:
        raise PermanentError(f"at most {MAX_RESOURCES} resources per job")
    out: list[Resource] = []
    names: set[str] = set()
    for i, (url, sha, given) in enumerate(raw):
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise PermanentError(f"resources[{i}].url must be an http(s) URL")
        name = safe_name(str(given or unquote(parts.path.rsplit("/", 1)[-1])), f"file-{i + 1}")
        if name in names:
            name = f"{i + 1}-{name}"
        names.add(name)
        out.append(Resource(url, sha.lower() if sha else None, name))
    return out, payload.max_bytes, tuple(a.lower() for a in payload.allow)


def _allowed(content_type: str, allow: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(content_type, pattern) for pattern in allow)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


async def _fetch(
    ctx: JobContext, fetcher: SafeFetcher, res: Resource, max_bytes: int, allow: tuple[str, ...], report: Any
) -> dict[str, Any]:
    try:
        async with fetcher.stream(res.url, max_bytes=max_bytes) as response:
            status = response.status_code
            if status in TRANSIENT_STATUS:
                raise RuntimeError(f"{res.shown}: HTTP {status} (transient)")
            if status >= 400:
                raise PermanentError(f"{res.shown}: HTTP {status}")
            ctype = response.headers.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
            if not _allowed(ctype, allow):
                raise PermanentError(f"{res.shown}: content type {ctype} is not allowed (allowed: {', '.join(allow)})")
            total = response.content_length
            digest = hashlib.sha256()
            size = 0
            async with ctx.artifacts.writing(res.name) as temp:
                with temp.open("wb") as f:
                    async for chunk in response.body():
                        size += len(chunk)
                        digest.update(chunk)
                        f.write(chunk)  # local disk, at most 64 KiB at a time: cheap enough for the loop
                        report(size, total)
                    f.flush()
                sha = digest.hexdigest()
                if res.sha256 and sha != res.sha256:
                    raise PermanentError(f"{res.shown}: sha256 is {sha}, expected {res.sha256}")
    except PERMANENT as exc:
        raise PermanentError(str(exc)) from None
    except BadStatus as exc:
        if exc.status_code in TRANSIENT_STATUS:
            raise RuntimeError(f"{exc} (transient)") from None
        raise PermanentError(str(exc)) from None
    except FetchError as exc:  # too slow, timed out, connection failed: worth another try
        raise RuntimeError(f"{exc} (transient)") from None
    return {
        "url": res.shown,
        "name": res.name,
        "key": ctx.artifacts.key(res.name),
        "size": size,
        "sha256": sha,
        "contentType": ctype,
        "verified": res.sha256 is not None,
    }


@job_type(
    "resource-download",
    plan="free",
    concurrency=3,
    memory_mb=1024,
    timeout_seconds=30 * 60,
    payload=DownloadPayload,
    description="asset downloading",
)
async def download(ctx: JobContext) -> Result:
    resources, max_bytes, allow = _resources(ctx)
    await ctx.artifacts.begin()
    files: list[dict[str, Any]] = []
    n = len(resources)
    try:
        async with SETTINGS.fetcher(max_bytes=max_bytes) as fetcher:
            for i, res in enumerate(resources):
                await ctx.checkpoint()
                done = ctx.artifacts.path(res.name)
                if done.exists():  # complete in an earlier attempt (only complete files have this name)
                    sha = _sha256_of(done)
                    if res.sha256 is None or sha == res.sha256:
                        files.append(
                            {
                                "url": res.shown,
                                "name": res.name,
                                "key": ctx.artifacts.key(res.name),
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

                files.append(await ctx.cancellable(_fetch(ctx, fetcher, res, max_bytes, allow, report)))
                ctx.progress(100 * (i + 1) / n, f"{i + 1} of {n} downloaded")
    except (PermanentError, JobCancelled):  # nothing is kept of a download that will not finish
        await ctx.artifacts.discard()
        raise
    return Result(
        {"files": files, "count": len(files), "bytes": sum(f["size"] for f in files)},
        files[0]["key"],  # the first file; all of them are in result.files
    )
