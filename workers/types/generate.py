"""generate: images, video, talking heads, audio and voice made by an outside provider
(Replicate, or any server that speaks its predictions API: predictions.py).

Payload: {"kind": "image" | "video" | "talking-head" | "audio" | "voice",
          "model": "<owner>/<name>" or "<owner>/<name>:<version>", "version": "<id>" (optional),
          "input": {...the model's own input...}, "maxBytes": 104857600 (optional)}

How a job goes:

1. First claim: it records the idempotency key the prediction will be created with
   (ctx.record_outside_work, which also takes one of the channel's places under the
   type's channel_concurrency: a parked job is `queued`, so the claim's running-job limit
   would not count it), creates the prediction with that key, and snoozes: the job goes
   back to the queue, `queued` with waitingFor "provider", runnable again at its next
   poll, its attempt not charged, and the prediction's id recorded with it in the same
   statement. No worker slot is held while the provider works.
2. Each later claim polls once: the provider's progress and new log lines become
   job:progress and job:output, and the job snoozes again (PGCUE_GENERATE_POLL_INTERVAL,
   or the provider's Retry-After when it rate-limits the polls), until the prediction
   finishes.
3. `succeeded`: every URL in its output is downloaded by the safe fetcher (fetch.py, as
   resource-download: PGCUE_FETCH_* limits, no private addresses, the size cap) into the
   job's artifacts, named for the kind with the extension of its content type, so the
   API serves each with the right Content-Type. `failed`: the job fails with the
   provider's message as its errorMessage (a model that is only unavailable now is
   retried with a new prediction). `canceled` at the provider: the job ends `cancelled`.
   401/403: a permanent failure, "invalid or expired API key". 429 and 5xx: retried with
   backoff, never sooner than Retry-After.

A crash never loses or repeats a prediction: the key is recorded before the create (a
create repeated after a crash sends the same Idempotency-Key), the prediction's id before
the first poll, and a rescued job's next claim finds both and polls the same prediction.
A user's cancel reaches a snoozed job too (pgcue.cancel_job wakes a queued job that has
outside work instead of ending it at once): its next claim cancels the prediction at the
provider, then the job ends `cancelled`.

Webhooks are not used: polling is the source of truth (see docs/job-types.md).
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar
from urllib.parse import unquote, urlsplit

import msgspec

from pgcue.core.config import ConfigError, env_struct
from pgcue.workers.runtime.context import JobCancelled, JobContext, PermanentError, Result, RetryLater
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
from pgcue.workers.types.predictions import (
    PROVIDERS,
    InvalidKey,
    Prediction,
    Provider,
    ProviderError,
    RateLimited,
    Rejected,
    Unavailable,
    looks_unavailable,
)

T = TypeVar("T")
Kind = Literal["image", "video", "talking-head", "audio", "voice"]
# The file family the result's resultPath is chosen from, per kind.
FAMILY: dict[str, str] = {
    "image": "image/",
    "video": "video/",
    "talking-head": "video/",
    "audio": "audio/",
    "voice": "audio/",
}
ALLOWED = ("image/", "video/", "audio/")  # what an output may be, whatever the kind
EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "audio/wav": ".wav",
    "audio/mpeg": ".mp3",
    "audio/ogg": ".ogg",
    "audio/flac": ".flac",
    "audio/mp4": ".m4a",
}
ALIASES = {
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/mp3": "audio/mpeg",
}
GENERIC = {"application/octet-stream", "binary/octet-stream", ""}
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
FETCH_PERMANENT = (AddressNotAllowed, InvalidURL, TooManyRedirects, ResponseTooLarge)
HARD_MAX_BYTES = 4 * 1024**3
MAX_LOG_CHARS = 64 * 1024  # new provider log text passed on per poll
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s?%")


class GenerateSettings(msgspec.Struct, frozen=True, kw_only=True):
    """PGCUE_GENERATE_*: the provider the generate workers use.

    The token is not a field (so no repr or log of the settings can show it): it is read
    from the file PGCUE_GENERATE_API_TOKEN_FILE names (a mounted secret), else from
    PGCUE_GENERATE_API_TOKEN, else from REPLICATE_API_TOKEN; see api_token()."""

    provider: str = "replicate"
    base_url: str = "https://api.replicate.com/v1"
    api_token_file: str = ""
    proxy: str = ""  # an HTTP(S) proxy for the provider's API (the environment's is not used)
    poll_interval: float = 4.0  # seconds between polls: 3–5 s is Replicate's pace
    request_timeout: float = 30.0  # one request to the provider
    max_wait: float = 2 * 3600.0  # a prediction not finished after this long is cancelled; the job fails
    max_bytes: int = 1024**3  # per output file (a payload's maxBytes may only lower it)
    max_outputs: int = 20  # files downloaded per prediction

    def __post_init__(self) -> None:
        for name in ("poll_interval", "request_timeout", "max_wait"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"PGCUE_GENERATE_{name.upper()} must be greater than 0")
        if self.provider not in PROVIDERS:
            raise ConfigError(f"PGCUE_GENERATE_PROVIDER must be one of {', '.join(sorted(PROVIDERS))}")
        if not re.match(r"^https?://", self.base_url):
            raise ConfigError("PGCUE_GENERATE_BASE_URL must be an http(s) URL")

    def api_token(self) -> str:
        """The provider's API token, from the operator's settings only ("" when none)."""
        if self.api_token_file:
            try:
                return Path(self.api_token_file).read_text().strip()
            except OSError as exc:
                raise PermanentError(
                    f"PGCUE_GENERATE_API_TOKEN_FILE cannot be read ({exc.strerror})", plain=True
                ) from None
        return (os.environ.get("PGCUE_GENERATE_API_TOKEN") or os.environ.get("REPLICATE_API_TOKEN") or "").strip()

    def provider_for(self) -> Provider:
        token = self.api_token()
        if not token:
            raise PermanentError(
                "no API key for the provider: set PGCUE_GENERATE_API_TOKEN or PGCUE_GENERATE_API_TOKEN_FILE "
                "for the generate workers",
                plain=True,
            )
        client: Provider = PROVIDERS[self.provider](
            self.base_url, token, timeout=self.request_timeout, proxy=self.proxy or None
        )
        return client


# Read (and checked) when a worker loads the type: a bad PGCUE_GENERATE_* stops it at
# start with a message naming the variable, not every job. The token is read per job.
SETTINGS = env_struct(GenerateSettings, "PGCUE_GENERATE_")
FETCH = FetchSettings.from_env()  # the outputs' downloads: PGCUE_FETCH_*, as resource-download


Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class GeneratePayload(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    kind: Annotated[Kind, msgspec.Meta(description="what is made: image, video, talking-head, audio or voice")]
    model: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}/[A-Za-z0-9][A-Za-z0-9._-]{0,99}(:[A-Za-z0-9._-]{1,128})?$",
            description="the provider's model, <owner>/<name> or <owner>/<name>:<version>",
        ),
    ]
    version: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,128}$")] | None = None
    input: Annotated[dict[str, Any], msgspec.Meta(description="the model's input, passed to the provider as is")] = (
        msgspec.field(default_factory=dict)
    )
    max_bytes: Annotated[int, msgspec.Meta(ge=1, le=HARD_MAX_BYTES)] | None = None
    # What a pipeline run adds to its stages' payloads (workers/types/orchestrate): the only
    # field beyond the ones above that a generate payload may carry.
    pipeline: dict[str, Any] | None = None


# The studio's generation pool. A job holds a worker slot only while it polls once or
# downloads its outputs, so a few slots serve many predictions in flight; the channel's
# limit counts the predictions in flight, not the slots.
@job_type(
    "generate",
    plan="paid",
    concurrency=4,
    memory_mb=1024,
    lease_seconds=60,
    timeout_seconds=30 * 60,
    max_attempts=8,
    channel_concurrency=2,
    payload=GeneratePayload,
    description="image, video, talking-head, audio and voice generation at an outside provider",
    secret_files=(("PGCUE_GENERATE_API_TOKEN_FILE", "api-token"),),
)
async def generate(ctx: JobContext) -> Result:
    payload = ctx.payload_as(GeneratePayload)
    settings = SETTINGS
    async with settings.provider_for() as provider:
        return await Generation(ctx, payload, settings, provider).run()


class Generation:
    """One claim of a generate job: start the prediction, or poll it once, or collect it."""

    def __init__(self, ctx: JobContext, payload: GeneratePayload, settings: GenerateSettings, provider: Provider):
        self.ctx = ctx
        self.payload = payload
        self.settings = settings
        self.provider = provider
        self.state: dict[str, Any] = dict(ctx.handler_state or {})

    @property
    def prediction_id(self) -> str | None:
        value = self.state.get("prediction")
        return value if isinstance(value, str) else None

    async def run(self) -> Result:
        try:
            await self.ctx.checkpoint()  # a cancel asked while the job was parked
            if self.prediction_id is None:
                await self._start()  # snoozes: never returns
            prediction = await self._call(self.provider.get(self.prediction_id or ""), polling=True)
            return await self._follow(prediction)
        except JobCancelled as exc:
            if exc.reason is None and self.prediction_id is not None:  # the user's cancel
                await self._cancel_at_provider("the job was cancelled")
            raise

    # --- the moves ----------------------------------------------------------------------

    async def _start(self) -> NoReturn:
        if not self.state.get("key"):
            state = {
                "provider": self.provider.name,
                "key": f"pgcue-{self.ctx.id}-{uuid.uuid4().hex[:12]}",
                "since": time.time(),
                "polls": 0,
                "logs": 0,
            }
            if not await self.ctx.record_outside_work(state):
                self.ctx.progress(0, "waiting for a free place: this channel has its most generations in flight")
                await self.ctx.snooze(self.settings.poll_interval)
            self.state = state
        else:
            self.ctx.output(f"creating the prediction again, with the same idempotency key {self.state['key']}\n")
        prediction = await self._call(
            self.provider.create(self.payload.model, self.payload.version, self.payload.input, str(self.state["key"])),
            polling=False,
        )
        self.state["prediction"] = prediction.id
        self.ctx.output(f"prediction {prediction.id} created at {self.provider.name} for {self.payload.model}\n")
        self._report(prediction, poll=False)
        await self.ctx.snooze(self.settings.poll_interval, self.state)  # records the id before the first poll

    async def _follow(self, prediction: Prediction) -> Result:
        self._report(prediction)
        if prediction.running:
            waited = time.time() - float(self.state.get("since") or time.time())
            if waited > self.settings.max_wait:
                await self._cancel_at_provider("it ran too long")
                raise PermanentError(
                    f"the provider did not finish prediction {prediction.id} within "
                    f"{self.settings.max_wait:g} s; it was cancelled",
                    plain=True,
                )
            await self.ctx.snooze(self.settings.poll_interval, self.state)
        if prediction.status == "succeeded":
            return await self._collect(prediction)
        if prediction.status == "failed":
            message = prediction.error_text or f"the provider failed prediction {prediction.id} without a message"
            if looks_unavailable(message):
                # Not the input's fault: retry with a new prediction (this one is over).
                await self.ctx.record_outside_work(None)
                raise RetryLater(f"{message} (transient: a retry makes a new prediction)")
            raise PermanentError(message, plain=True)
        # canceled (or aborted) at the provider, by someone else or by the provider itself
        self.ctx.output(f"prediction {prediction.id} was cancelled at the provider\n")
        await self.ctx.queue.cancel(self.ctx.id)  # so the job ends cancelled, not retried
        raise JobCancelled(f"prediction {prediction.id} cancelled", reason="Prediction cancelled at the provider")

    async def _call(self, call: Awaitable[T], *, polling: bool) -> T:
        """A provider call, stopped at once by a cancel; its errors as the job's outcomes."""
        try:
            return await self.ctx.cancellable(call)
        except InvalidKey as exc:
            raise PermanentError(str(exc), plain=True) from None
        except RateLimited as exc:
            if polling:  # the prediction goes on: come back when the provider says
                wait = max(self.settings.poll_interval, exc.retry_after)
                self.ctx.output(f"the provider asked us to poll less often; next poll in {wait:g} s\n")
                await self.ctx.snooze(wait, self.state)
            raise RetryLater(_retrying(str(exc), exc.retry_after), after=exc.retry_after) from None
        except Unavailable as exc:
            raise RetryLater(_retrying(str(exc), exc.retry_after), after=exc.retry_after) from None
        except Rejected as exc:
            if polling and exc.status == 404:
                raise PermanentError(
                    f"prediction {self.prediction_id} is not known to the provider (HTTP 404)", plain=True
                ) from None
            raise PermanentError(str(exc), plain=True) from None

    async def _cancel_at_provider(self, why: str) -> None:
        """Best effort: the job ends as it must whatever the provider answers."""
        prediction_id = self.prediction_id
        if prediction_id is None:
            return
        try:
            await self.provider.cancel(prediction_id)
            self.ctx.output(f"cancelled prediction {prediction_id} at the provider: {why}\n")
        except ProviderError as exc:
            self.ctx.output(f"could not cancel prediction {prediction_id} at the provider: {exc}\n")
            self.ctx.log.warning("provider cancel failed", prediction=prediction_id, error=str(exc))

    # --- reporting ----------------------------------------------------------------------

    def _report(self, prediction: Prediction, *, poll: bool = True) -> None:
        """The provider's progress and new log text as job:progress and job:output."""
        logs = prediction.logs or ""
        seen = int(self.state.get("logs") or 0)
        if len(logs) < seen:  # the provider rewrote its log: start again
            seen = 0
        fresh = logs[seen:]
        if len(fresh) > MAX_LOG_CHARS:
            fresh = "…" + fresh[-MAX_LOG_CHARS:]
        if fresh:
            self.ctx.output(fresh if fresh.endswith("\n") else fresh + "\n")
        self.state["logs"] = len(logs)
        if poll:
            self.state["polls"] = int(self.state.get("polls") or 0) + 1
        self.state["status"] = prediction.status
        percent = _percent(prediction)
        shown = f" {percent:.0f}%" if percent is not None else ""
        self.ctx.progress(
            0.9 * (percent or 0.0) if prediction.running else 90.0,
            f"{prediction.status} at {self.provider.name}{shown} (prediction {prediction.id})",
        )

    # --- outputs ------------------------------------------------------------------------

    async def _collect(self, prediction: Prediction) -> Result:
        urls, other = split_output(prediction.output)
        urls = urls[: self.settings.max_outputs]
        if not urls:
            raise PermanentError(f"prediction {prediction.id} succeeded but its output holds no file URL", plain=True)
        max_bytes = min(self.payload.max_bytes or self.settings.max_bytes, self.settings.max_bytes)
        await self.ctx.artifacts.begin()
        files: list[dict[str, Any]] = []
        n = len(urls)
        try:
            async with FETCH.fetcher(max_bytes=max_bytes) as fetcher:
                for i, url in enumerate(urls):
                    await self.ctx.checkpoint()
                    self.ctx.progress(90 + 10 * i / n, f"downloading output {i + 1} of {n}")
                    files.append(await self.ctx.cancellable(self._download(fetcher, url, i, n, max_bytes)))
        except (PermanentError, JobCancelled):  # nothing is kept of outputs that will not all arrive
            await self.ctx.artifacts.discard()
            raise
        self.ctx.progress(100, f"{n} output(s) downloaded")
        family = FAMILY[self.payload.kind]
        main = next((f for f in files if f["contentType"].startswith(family)), files[0])
        data = {
            "kind": self.payload.kind,
            "provider": self.provider.name,
            "model": self.payload.model,
            "predictionId": prediction.id,
            "files": files,
            "output": other,
            "metrics": prediction.metrics,
            "polls": self.state.get("polls"),
            "seconds": round(time.time() - float(self.state.get("since") or time.time()), 3),
        }
        return Result(data, main["key"])

    async def _download(self, fetcher: SafeFetcher, url: str, i: int, n: int, max_bytes: int) -> dict[str, Any]:
        shown = redact(url)
        try:
            async with fetcher.stream(url, max_bytes=max_bytes) as response:
                status = response.status_code
                if status in TRANSIENT_STATUS:
                    raise RetryLater(f"output {shown}: HTTP {status} (transient)")
                if status >= 400:
                    raise PermanentError(f"output {shown}: HTTP {status}", plain=True)
                ctype = content_type_of(response.headers.get("content-type", ""), url)
                if not ctype.startswith(ALLOWED):
                    raise PermanentError(
                        f"output {shown}: content type {ctype or 'unknown'} is not an image, video or audio",
                        plain=True,
                    )
                name = f"{self.payload.kind}{'' if n == 1 else f'-{i + 1}'}{extension_for(ctype, url)}"
                digest = hashlib.sha256()
                size = 0
                total = response.content_length
                async with self.ctx.artifacts.writing(name) as temp:
                    with temp.open("wb") as f:
                        async for chunk in response.body():
                            size += len(chunk)
                            digest.update(chunk)
                            f.write(chunk)
                            if total:
                                self.ctx.progress(90 + 10 * (i + min(1.0, size / total)) / n)
                        f.flush()
        except FETCH_PERMANENT as exc:
            raise PermanentError(f"output {shown}: {exc}", plain=True) from None
        except BadStatus as exc:
            if exc.status_code in TRANSIENT_STATUS:
                raise RetryLater(f"{exc} (transient)") from None
            raise PermanentError(str(exc), plain=True) from None
        except FetchError as exc:  # too slow, timed out, connection failed: worth another try
            raise RetryLater(f"output {shown}: {exc} (transient)") from None
        return {
            "name": name,
            "key": self.ctx.artifacts.key(name),
            "url": shown,
            "size": size,
            "sha256": digest.hexdigest(),
            "contentType": ctype,
        }


# --- helpers (pure; tests/unit/test_generate.py) --------------------------------------------


def split_output(output: Any, limit: int = 100) -> tuple[list[str], Any]:
    """The http(s) URLs in a prediction's output (a URL, a list or a dict of them, nested),
    in order and once each, and what else it holds (text, numbers) with every URL shown
    without its query."""
    urls: list[str] = []

    def walk(value: Any, depth: int) -> Any:
        if depth > 5:
            return None
        if isinstance(value, str):
            if re.match(r"^https?://", value, re.IGNORECASE):
                if value not in urls and len(urls) < limit:
                    urls.append(value)
                return redact(value)
            return value[:2000]
        if isinstance(value, list):
            return [walk(v, depth + 1) for v in value[:limit]]
        if isinstance(value, dict):
            return {str(k)[:100]: walk(v, depth + 1) for k, v in list(value.items())[:limit]}
        return value if isinstance(value, int | float | bool) or value is None else None

    shown = walk(output, 0)
    if isinstance(output, str) and urls:
        shown = None  # the output is the file: its URL says nothing more
    elif isinstance(output, list) and urls and len(urls) == len(output):
        shown = None
    return urls, shown


def content_type_of(header: str, url: str) -> str:
    """The content type an output is served as; a generic one is read from the URL's
    extension instead."""
    ctype = header.split(";")[0].strip().lower()
    if ctype in GENERIC:
        ctype = (mimetypes.guess_type(unquote(urlsplit(url).path))[0] or ctype).lower()
    return ALIASES.get(ctype, ctype)


def extension_for(ctype: str, url: str) -> str:
    """The file extension an artifact of `ctype` gets, so the API serves it as `ctype`."""
    if ctype in EXTENSIONS:
        return EXTENSIONS[ctype]
    suffix = Path(unquote(urlsplit(url).path)).suffix.lower()
    if suffix and mimetypes.guess_type("x" + suffix)[0] == ctype:
        return suffix
    return mimetypes.guess_extension(ctype) or ".bin"


def _percent(prediction: Prediction) -> float | None:
    """The provider's progress, 0–100: its own `progress` field, else the last "NN%" of its
    log (the progress bars models print)."""
    if prediction.progress is not None:
        value = float(prediction.progress)
        return max(0.0, min(100.0, value * 100 if value <= 1 else value))
    found = _PERCENT.findall((prediction.logs or "")[-4000:])
    if found:
        return max(0.0, min(100.0, float(found[-1])))
    return None


def _retrying(message: str, after: float) -> str:
    """A transient failure's errorMessage: retried while attempts remain (it cannot promise
    a retry), never sooner than the provider's Retry-After."""
    return f"{message} (transient; Retry-After {after:g} s)" if after else f"{message} (transient)"
