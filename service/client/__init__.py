"""pgcue.client: a Python client for pgcue's HTTP API, synchronous (`Client`) and asyncio
(`AsyncClient`), over one core (pgcue.client.core).

    from pgcue.client import Client, JobFailed

    with Client("http://127.0.0.1:8000", api_key) as pgcue:
        job = pgcue.wait(pgcue.enqueue("render", "demo", payload), timeout=600)
        print(job.result_path)

Installed with `pip install 'pgcue[client]'`: httpx and msgspec, nothing of the server
(no asyncpg, psycopg or Litestar). The models are the API's own wire structs
(pgcue.core.wire) and states (pgcue.core.states). docs/client.md has every call, every
exception and the retry policy.
"""

from __future__ import annotations

from pgcue.client.async_client import AsyncClient, AsyncEventStream
from pgcue.client.errors import (
    ApiError,
    AwaitingApproval,
    BadRequest,
    ClientError,
    Conflict,
    EnqueueManyFailed,
    Forbidden,
    JobCancelled,
    JobError,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    RangeNotSatisfiable,
    RequestTimeout,
    ResponseError,
    ServerError,
    ServiceUnavailable,
    TooManyRequests,
    TransportError,
    Unauthorized,
    Unprocessable,
    WaitTimeout,
)
from pgcue.client.events import Event, OtherEvent
from pgcue.client.retry import NO_RETRY, RetryPolicy
from pgcue.client.sync_client import Client, EventStream
from pgcue.core.states import EventKind, JobState, StageState, WaitingFor
from pgcue.core.wire import (
    JobOut,
    JobOutput,
    JobProgress,
    JobStatus,
    NewJobBody,
    ProposalsUpdated,
    StageOut,
    StagesOut,
    StageUpdated,
    Stats,
)

__all__ = [
    "NO_RETRY",
    "ApiError",
    "AsyncClient",
    "AsyncEventStream",
    "AwaitingApproval",
    "BadRequest",
    "Client",
    "ClientError",
    "Conflict",
    "EnqueueManyFailed",
    "Event",
    "EventKind",
    "EventStream",
    "Forbidden",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "JobOut",
    "JobOutput",
    "JobProgress",
    "JobState",
    "JobStatus",
    "NewJobBody",
    "NotFound",
    "OtherEvent",
    "PayloadTooLarge",
    "ProposalsUpdated",
    "RangeNotSatisfiable",
    "RequestTimeout",
    "ResponseError",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "StageOut",
    "StageState",
    "StageUpdated",
    "StagesOut",
    "Stats",
    "TooManyRequests",
    "TransportError",
    "Unauthorized",
    "Unprocessable",
    "WaitTimeout",
    "WaitingFor",
]
