"""Job types: each type's handler and settings, registered beside the handler with
@job_type, in one registry every part of a worker reads.

Workers (and `pgcue migrate`) write the settings, and the JSON Schema of each type's
payload, to pgcue.job_types, which is how the API, psql and other producers learn the
types without importing worker code.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import msgspec

from pgcue.core.cron import Cron
from pgcue.core.models import JobType, Schedule

if TYPE_CHECKING:
    from pgcue.workers.runtime.context import JobContext

Handler = Callable[["JobContext"], Awaitable[Any]]

# The job types shipped with pgcue, imported by load().
BUILTIN_MODULES = (
    "pgcue.workers.types.builtin",
    "pgcue.workers.types.tts",
    "pgcue.workers.types.render",
    "pgcue.workers.types.download",
    "pgcue.workers.types.text",
    "pgcue.workers.types.generate",
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
    # The payload's msgspec Struct (None: any JSON object). Its JSON Schema is registered
    # with the type, and every enqueue is checked against it; ctx.payload_as(it) decodes.
    payload: type | None = None
    # How a cluster runs this type's workers (`pgcue deploy k8s`, docs/deploy.md):
    # "deployment", a Deployment scaled by KEDA, whose scale-in stops a pod with SIGTERM
    # and the shutdown grace; or "job", a KEDA ScaledJob, whose pods run their jobs to
    # the end and exit, so that no scale-in stops one mid-job (for jobs hours long).
    deploy_as: str = "deployment"
    # The secrets the type's workers read, as (setting, key): `setting` is an environment
    # variable ending in _FILE that names a file holding the secret, `key` its key in the
    # Kubernetes Secret pgcue-<type>. `pgcue deploy` mounts that Secret (optional: without
    # it the pods start and the type's jobs fail saying what is missing) and sets the
    # variable; compose passes the variable without _FILE through from the host's
    # environment instead. The type reads the file, else that variable.
    secret_files: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.deploy_as not in ("deployment", "job"):
            raise ValueError(f"job type {self.name!r}: deploy_as must be 'deployment' or 'job'")
        for setting, key in self.secret_files:
            if not setting.endswith("_FILE") or not key:
                raise ValueError(f"job type {self.name!r}: secret_files takes (a *_FILE variable, a key)")

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
            payload_schema=None if self.payload is None else msgspec.json.schema(self.payload),
        )


_registry: dict[str, TypeSpec] = {}


def job_type(name: str, **settings: Any) -> Callable[[Handler], Handler]:
    """Register `handler` for job type `name` with its settings (TypeSpec's fields). A
    second registration of a name keeps the first one's settings unless it gives others."""

    def register(handler: Handler) -> Handler:
        base = _registry.get(name, TypeSpec(name))
        _registry[name] = replace(base, handler=handler, **settings)
        return handler

    return register


def declare(spec: TypeSpec) -> None:
    """Register a type's settings without a handler in this process (a type whose worker
    runs elsewhere: the registry then knows it, but `pgcue worker` refuses to run it)."""
    _registry.setdefault(spec.name, spec)


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
    """Register a periodic job (see pgcue.core.models.Schedule); checked here, so a bad cron
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
