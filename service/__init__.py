"""pgcue: a PostgreSQL-native job queue service.

The public API, importable from here (each name is imported on first use, so `import
pgcue` alone pulls in nothing heavy):

    from pgcue import job_type, JobContext, Result, PermanentError   # writing a job type
    from pgcue import pipeline, Stage, check                          # pipelines
    from pgcue import schedule                                        # cron schedules
    from pgcue import Queue, NewJob, Job, JobState, enqueue_many_sync # producing jobs
    from pgcue import Client, AsyncClient                             # over the HTTP API
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "job_type": "pgcue.workers.runtime.registry",
    "schedule": "pgcue.workers.runtime.registry",
    "TypeSpec": "pgcue.workers.runtime.registry",
    "JobContext": "pgcue.workers.runtime.context",
    "Result": "pgcue.workers.runtime.context",
    "PermanentError": "pgcue.workers.runtime.context",
    "JobCancelled": "pgcue.workers.runtime.context",
    "RetryLater": "pgcue.workers.runtime.context",
    "pipeline": "pgcue.workers.types.orchestrate.definitions",
    "Stage": "pgcue.workers.types.orchestrate.definitions",
    "check": "pgcue.workers.types.orchestrate.definitions",
    "Verdict": "pgcue.workers.types.orchestrate.definitions",
    "Queue": "pgcue.core.queue",
    "enqueue_many_sync": "pgcue.core.queue",
    "NewJob": "pgcue.core.models",
    "Job": "pgcue.core.models",
    "JobState": "pgcue.core.states",
    "Settings": "pgcue.core.config",
    "from_env": "pgcue.core.config",
    "Client": "pgcue.client",
    "AsyncClient": "pgcue.client",
}

__all__ = [  # noqa: RUF022 (grouped as above)
    "__version__",
    "job_type",
    "schedule",
    "TypeSpec",
    "JobContext",
    "Result",
    "PermanentError",
    "JobCancelled",
    "RetryLater",
    "pipeline",
    "Stage",
    "check",
    "Verdict",
    "Queue",
    "enqueue_many_sync",
    "NewJob",
    "Job",
    "JobState",
    "Settings",
    "from_env",
    "Client",
    "AsyncClient",
]

if TYPE_CHECKING:
    from pgcue.client import AsyncClient, Client
    from pgcue.core.config import Settings, from_env
    from pgcue.core.models import Job, NewJob
    from pgcue.core.queue import Queue, enqueue_many_sync
    from pgcue.core.states import JobState
    from pgcue.workers.runtime.context import JobCancelled, JobContext, PermanentError, Result, RetryLater
    from pgcue.workers.runtime.registry import TypeSpec, job_type, schedule
    from pgcue.workers.types.orchestrate.definitions import Stage, Verdict, check, pipeline


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'pgcue' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
