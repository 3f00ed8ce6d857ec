"""Job types: each type's handler and settings, in one registry every part reads.

The studio's pools (seed 002: memory and concurrency per worker kind) are the defaults
below; a module registers a handler with @job_type and may override any setting.
Workers write these settings to pgcue.job_types when they start, which is how the API
and psql learn the types without importing worker code.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pgcue.core.cron import Cron
from pgcue.core.models import JobType, Schedule

if TYPE_CHECKING:
    from pgcue.workers.runtime.context import JobContext

Handler = Callable[["JobContext"], Awaitable[Any]]

BUILTIN_MODULES = (
    "pgcue.workers.types.builtin",
    "pgcue.workers.types.tts",
    "pgcue.workers.types.render",
    "pgcue.workers.types.download",
    "pgcue.workers.types.text",
    "pgcue.workers.types.orchestrate",
)


@dataclass(frozen=True)
class TypeSpec:
    name: str
    handler: Handler | None = None
    plan: str = "free"  # the least plan that may enqueue it: free | paid
    concurrency: int = 1  # handlers at once per worker process
    memory_mb: int | None = None  # address-space limit the worker process sets itself
    lease_seconds: int = 60  # how long a claim lasts without a heartbeat
    timeout_seconds: int = 3600  # one attempt's wall-clock limit
    max_attempts: int = 3
    retry_base_seconds: float | None = None  # None: PGCUE_RETRY_BASE_SECONDS
    claim_batch: int | None = None  # None: PGCUE_CLAIM_BATCH
    description: str = ""
    # Fleet-wide policies (None: no limit), enforced in the claim across every process.
    global_concurrency: int | None = None  # running at once in the whole fleet
    channel_concurrency: int | None = None  # running at once in one channel
    rate_limit: int | None = None  # starts per rate_period_seconds
    rate_period_seconds: int = 60

    def row(self) -> JobType:
        return JobType(
            name=self.name,
            plan=self.plan,
            concurrency=self.concurrency,
            memory_mb=self.memory_mb,
            lease_seconds=self.lease_seconds,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
            description=self.description,
            global_concurrency=self.global_concurrency,
            channel_concurrency=self.channel_concurrency,
            rate_limit=self.rate_limit,
            rate_period_seconds=self.rate_period_seconds,
        )


_MIN = 60
_HOUR = 3600

# Seed 002's worker table. Lease: seed 002 gives orchestration a 1-hour ack timeout.
STUDIO_TYPES: dict[str, TypeSpec] = {
    spec.name: spec
    for spec in (
        TypeSpec(
            "orchestrate",
            plan="paid",
            concurrency=1,
            memory_mb=4096,
            lease_seconds=_HOUR,
            timeout_seconds=24 * _HOUR,
            description="multi-stage pipeline orchestration with quality gates",
        ),
        TypeSpec(
            "idea",
            plan="paid",
            concurrency=2,
            memory_mb=2048,
            timeout_seconds=30 * _MIN,
            description="AI idea generation",
        ),
        TypeSpec(
            "proposals",
            plan="paid",
            concurrency=2,
            memory_mb=2048,
            timeout_seconds=30 * _MIN,
            description="AI proposal generation and scoring",
        ),
        TypeSpec(
            "fact-check",
            plan="paid",
            concurrency=2,
            memory_mb=2048,
            timeout_seconds=30 * _MIN,
            description="content fact-checking",
        ),
        TypeSpec(
            "humanize",
            plan="paid",
            concurrency=2,
            memory_mb=2048,
            timeout_seconds=30 * _MIN,
            description="text humanization",
        ),
        TypeSpec(
            "discover",
            plan="paid",
            concurrency=2,
            memory_mb=2048,
            timeout_seconds=30 * _MIN,
            description="research with progressive filtering",
        ),
        TypeSpec(
            "tts",
            plan="free",
            concurrency=2,
            memory_mb=1024,
            timeout_seconds=30 * _MIN,
            description="text-to-speech rendering and merge",
        ),
        TypeSpec(
            "resource-download",
            plan="free",
            concurrency=3,
            memory_mb=1024,
            timeout_seconds=30 * _MIN,
            description="asset downloading",
        ),
        TypeSpec(
            "render",
            plan="paid",
            concurrency=1,
            memory_mb=8192,
            timeout_seconds=2 * _HOUR,
            description="composition to MP4 export",
        ),
    )
}

_registry: dict[str, TypeSpec] = dict(STUDIO_TYPES)


def job_type(name: str, **settings: Any) -> Callable[[Handler], Handler]:
    """Register `handler` for job type `name`; settings override the type's defaults."""

    def register(handler: Handler) -> Handler:
        base = _registry.get(name, TypeSpec(name))
        _registry[name] = replace(base, handler=handler, **settings)
        return handler

    return register


_schedules: dict[str, Schedule] = {}


def schedule(
    name: str,
    cron: str,
    job_type: str,
    channel_id: str,
    payload: Any = None,
    *,
    priority: int = 0,
    catch_up: bool = False,
) -> Schedule:
    """Register a periodic job (see service.models.Schedule); checked here, so a bad cron
    expression fails at import, not at its first tick."""
    Cron.parse(cron)
    entry = Schedule(
        name=name,
        cron=cron,
        type=job_type,
        channel_id=channel_id,
        payload={} if payload is None else payload,
        priority=priority,
        catch_up=catch_up,
    )
    _schedules[name] = entry
    return entry


def all_schedules() -> list[Schedule]:
    return [entry for _, entry in sorted(_schedules.items())]


def load(modules: Iterable[str] = ()) -> None:
    """Import the built-in types and `modules` (PGCUE_IMPORTS) so their handlers register."""
    for module in (*BUILTIN_MODULES, *modules):
        importlib.import_module(module)


def get(name: str) -> TypeSpec:
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry))
        raise KeyError(f"unknown job type {name!r}; known types: {known}") from None


def all_types() -> list[TypeSpec]:
    return [spec for _, spec in sorted(_registry.items())]


def runnable() -> list[TypeSpec]:
    """Types that have a handler in this process."""
    return [spec for spec in all_types() if spec.handler is not None]
