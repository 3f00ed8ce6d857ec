"""The providers `generate` runs predictions at, behind one small interface, and the first
of them: a client of Replicate's predictions API (and of any server that speaks it).

A provider creates a prediction, gets it and cancels it; nothing else. A prediction's
`status` is one of `starting`, `processing` (still running), `succeeded`, `failed`,
`canceled` (finished). Every failure to talk to the provider is a ProviderError whose
class says what the job should do with it: InvalidKey (401/403: the key is wrong, no
retry helps), RateLimited (429, with the provider's Retry-After), Unavailable (5xx, a
model that is not available, a connection that failed or timed out: try again later),
Rejected (any other 4xx: the request itself is wrong). Messages carry the provider's own
words and never the token.

The token comes from the operator (a setting, or a file such as a mounted secret), never
from a payload; it is sent only to the provider's base URL, never to the URLs of its
outputs (those are downloaded by the safe fetcher, without it), and never logged: the
client's repr leaves it out, and redirects are not followed (a redirect would take the
Authorization header elsewhere).
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol

import httpx
import msgspec

# Prediction ids and model path segments go into URL paths: only these characters.
_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_UNAVAILABLE = re.compile(r"\b(unavailable|overloaded|no capacity|cold boot|try again later)\b", re.IGNORECASE)
RUNNING = frozenset({"starting", "processing"})
# `aborted`: Replicate's word for a prediction stopped before it started; `cancelled` for
# servers that spell it so. Both end like `canceled`.
FINISHED = frozenset({"succeeded", "failed", "canceled", "cancelled", "aborted"})
MAX_RETRY_AFTER = 600.0


class Prediction(msgspec.Struct, kw_only=True):
    """A prediction as the provider reports it (fields it does not send are None)."""

    id: str
    status: str
    output: Any = None
    error: Any = None
    logs: str | None = None
    metrics: dict[str, Any] | None = None
    # Not Replicate's: a provider that reports its own progress, 0–1 or 0–100.
    progress: float | None = None
    model: str | None = None
    version: str | None = None

    @property
    def running(self) -> bool:
        """Not finished yet (a status this client does not know counts as running)."""
        return self.status not in FINISHED

    @property
    def error_text(self) -> str:
        if self.error is None or self.error == "":
            return ""
        return self.error if isinstance(self.error, str) else json.dumps(self.error)[:1000]


class ProviderError(Exception):
    """A request to the provider did not give a prediction. `status` is the HTTP status
    (None: no answer), `detail` the provider's own message, `retry_after` its Retry-After
    in seconds (0: none)."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = "", retry_after: float = 0.0):
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class InvalidKey(ProviderError):
    """401/403: the API key is missing, wrong, expired or lacks the right."""


class RateLimited(ProviderError):
    """429: too many requests; `retry_after` says when to come back."""


class Unavailable(ProviderError):
    """5xx, a model the provider cannot run now, or no answer at all: try again later."""


class Rejected(ProviderError):
    """Any other 4xx: the request is wrong (unknown model, bad input) and stays wrong."""


class Provider(Protocol):
    """What `generate` needs of a provider. Implementations are async context managers
    (they hold a connection pool for one job's calls)."""

    name: str

    async def create(
        self, model: str, version: str | None, input: Mapping[str, Any], idempotency_key: str
    ) -> Prediction:
        """Start a prediction. Called again with the same key after a crash, a provider that
        honours the key answers with the prediction it made the first time."""
        ...

    async def get(self, prediction_id: str) -> Prediction: ...

    async def cancel(self, prediction_id: str) -> Prediction: ...

    async def __aenter__(self) -> Provider: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def parse_retry_after(value: str | None, now: float | None = None) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), at most
    MAX_RETRY_AFTER; 0 when absent or unreadable."""
    if not value:
        return 0.0
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return 0.0
        if when is None:
            return 0.0
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return 0.0
    return max(0.0, min(MAX_RETRY_AFTER, seconds))


def looks_unavailable(text: str) -> bool:
    """A provider's message that means "not now" rather than "never" (a model that is
    temporarily unavailable, overloaded, or still booting)."""
    return bool(_UNAVAILABLE.search(text or ""))


def _detail(response: httpx.Response) -> str:
    """The provider's own message from an error answer: `detail`, `error` or `title` of a
    JSON body (Replicate answers RFC 7807 problems), else the start of the text."""
    text = response.text[:2000]
    try:
        body = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:500]
    if isinstance(body, dict):
        for key in ("detail", "error", "message", "title"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if isinstance(value, str) and value.strip():
                return value.strip()[:500]
    return " ".join(text.split())[:500]


def classify(response: httpx.Response, what: str) -> ProviderError:
    """The ProviderError for an error answer to `what` ("creating the prediction", ...)."""
    status = response.status_code
    detail = _detail(response)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    said = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status in (401, 403):
        return InvalidKey(f"invalid or expired API key (the provider answered {said})", status=status, detail=detail)
    if status == 429:
        return RateLimited(
            f"the provider is rate limiting us ({said}) while {what}",
            status=status,
            detail=detail,
            retry_after=retry_after,
        )
    if status >= 500 or status in (408, 425) or looks_unavailable(detail):
        return Unavailable(
            f"the provider is unavailable ({said}) while {what}", status=status, detail=detail, retry_after=retry_after
        )
    return Rejected(detail or f"the provider refused {what} (HTTP {status})", status=status, detail=detail)


class ReplicatePredictions:
    """Replicate's HTTP predictions API (https://replicate.com/docs/reference/http), or a
    server that speaks it at another base URL:

        POST {base}/models/{owner}/{name}/predictions   {"input"}             a model's latest version
        POST {base}/predictions                         {"version", "input"}  a given version
        GET  {base}/predictions/{id}
        POST {base}/predictions/{id}/cancel

    with `Authorization: Bearer <token>` and `Idempotency-Key: <key>` on create."""

    name = "replicate"

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0, proxy: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._proxy = proxy or None
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:  # never the token
        return f"ReplicatePredictions({self.base_url!r})"

    async def __aenter__(self) -> ReplicatePredictions:
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"authorization": f"Bearer {self._token}", "user-agent": "pgcue-generate"},
            timeout=httpx.Timeout(self._timeout, connect=min(10.0, self._timeout)),
            follow_redirects=False,
            trust_env=False,  # no proxy, netrc or CA variables from the environment: PGCUE_GENERATE_PROXY
            proxy=self._proxy,
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def create(
        self, model: str, version: str | None, input: Mapping[str, Any], idempotency_key: str
    ) -> Prediction:
        owner, _, rest = model.partition("/")
        name, _, pinned = rest.partition(":")
        if not (_SEGMENT.match(owner) and _SEGMENT.match(name)):
            raise Rejected(f"model must be <owner>/<name> or <owner>/<name>:<version>, not {model[:200]!r}")
        version = version or pinned or None
        if version:
            path, body = "/predictions", {"version": version, "input": dict(input)}
        else:
            path, body = f"/models/{owner}/{name}/predictions", {"input": dict(input)}
        return await self._call("POST", path, "creating the prediction", json=body, key=idempotency_key)

    async def get(self, prediction_id: str) -> Prediction:
        return await self._call("GET", f"/predictions/{_checked(prediction_id)}", "polling the prediction")

    async def cancel(self, prediction_id: str) -> Prediction:
        return await self._call("POST", f"/predictions/{_checked(prediction_id)}/cancel", "cancelling the prediction")

    async def _call(self, method: str, path: str, what: str, *, json: Any = None, key: str | None = None) -> Prediction:
        if self._client is None:
            raise RuntimeError("use the provider as `async with provider:`")
        headers = {"idempotency-key": key} if key else None
        try:
            response = await self._client.request(method, path, json=json, headers=headers)
        except httpx.TimeoutException:
            raise Unavailable(f"the provider did not answer in time while {what}") from None
        except httpx.HTTPError as exc:  # the text names the host, never the headers
            raise Unavailable(f"the provider could not be reached while {what}: {type(exc).__name__}") from None
        if response.status_code >= 400 or response.status_code in (301, 302, 303, 307, 308):
            if response.status_code < 400:
                raise Rejected(f"the provider answered a redirect (HTTP {response.status_code}) while {what}")
            raise classify(response, what)
        try:
            return msgspec.convert(response.json(), Prediction, strict=False)
        except (ValueError, msgspec.ValidationError):
            raise Unavailable(f"the provider's answer was not a prediction while {what}") from None


def _checked(prediction_id: str) -> str:
    if not _ID.match(prediction_id):
        raise Rejected(f"not a prediction id: {prediction_id[:100]!r}")
    return prediction_id


PROVIDERS = {"replicate": ReplicatePredictions}
