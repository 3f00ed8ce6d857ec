"""Settings from the environment (PGCUE_*), one msgspec Struct.

A job type keeps its own settings beside its handler, in a Struct of its own read with
`env_struct(TheSettings, "PGCUE_<PREFIX>_")` (pgcue.workers.types.text: PGCUE_LLM_*).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
GIB = 1024**3

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting has a value pgcue cannot use; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = DEFAULT_DATABASE_URL
    # PostgreSQL itself, never a pooler: what needs a session of its own goes here (each
    # process's LISTEN connection, the maintenance leader's session lock, migrations).
    # '' = database_url. Behind PgBouncer in transaction mode, database_url names the
    # pooler and this the server (docs/deploy.md).
    direct_database_url: str = ""
    schema: str = "pgcue"
    host: str = "127.0.0.1"
    port: int = 8000
    log_format: str = "auto"  # auto | json | console
    log_level: str = "info"
    # Worker timing. The poll is the fallback when a notification is lost.
    poll_interval: float = 1.0
    claim_batch: int = 500
    # How far ahead of its free slots a worker claims: as many jobs as it expects to start
    # within this many seconds at the pace its handlers finish (0: only free slots). Jobs
    # that take longer than this are never claimed ahead; no-op-short ones are claimed in
    # batches of up to claim_batch instead of one free slot's worth.
    claim_ahead_seconds: float = 0.05
    shutdown_grace: float = 30.0
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 3600.0
    # Coalescing of progress/output writes from running handlers.
    report_interval: float = 0.1
    # Maintenance (one leader at a time).
    rescue_interval: float = 5.0
    prune_interval: float = 60.0
    retention_seconds: float = 7 * 24 * 3600.0
    artifact_sweep_interval: float = 5.0
    # Modules to import for their job types (comma-separated in PGCUE_IMPORTS).
    imports: tuple[str, ...] = ()
    artifacts_dir: str = "artifacts"
    # Most bytes of artifacts one channel may keep (0: no limit); a job whose artifact
    # would pass it fails with a message saying so.
    artifact_quota_bytes: int = 10 * GIB
    # 0 turns asyncpg's prepared-statement cache off (needed behind PgBouncer in
    # transaction mode).
    statement_cache_size: int = 100
    # random_page_cost for pgcue's own sessions (0 leaves the server's setting). The jobs
    # table's hot part lives in memory, and at the default of 4 the planner takes a
    # sequential scan of the whole table for a batch of 500 completions, releases or
    # lease extensions (sql/complete_jobs.sql); at 1.1, the usual value for data in RAM or
    # on SSD, it probes the primary key per job.
    random_page_cost: float = 1.1
    # PostgreSQL's JIT compiles a query whose estimated cost passes jit_above_cost, which
    # short queries on a big table do: it took 30-70 ms to save nothing on the panel's
    # 2 ms reads of a 5,000,000-job table. False turns it off in pgcue's sessions; True
    # leaves the server's setting.
    jit: bool = False
    # A LISTEN connection is proved alive by a NOTIFY round trip this often; no answer
    # within the timeout and it is replaced.
    listener_probe_interval: float = 10.0
    listener_probe_timeout: float = 5.0
    # Live streams (SSE): events a subscriber may have pending before it is cut off (it
    # resumes with Last-Event-ID), events read per page of a replay, seconds one write may
    # wait for a client that does not read, open streams per API key (429 past it).
    sse_backlog: int = 1000
    sse_replay_page: int = 500
    sse_write_timeout: float = 30.0
    sse_streams_per_key: int = 20
    sse_keepalive: float = 15.0
    # The API process: pooled connections, and the largest request body (413 above it:
    # payloads are inputs, not files).
    api_pool_size: int = 10
    max_body_bytes: int = 1024 * 1024
    # A migration waits at most this long for a lock (a long transaction elsewhere), then
    # fails without having changed anything, instead of stalling every query behind it.
    migration_lock_timeout: float = 10.0
    # The Jobs panel: how long a sign-in lasts (its session ends then, or at sign-out, or
    # when its key is revoked).
    session_seconds: float = 12 * 3600.0

    def __post_init__(self) -> None:
        if not _SCHEMA_RE.match(self.schema):
            raise ConfigError(
                f"PGCUE_SCHEMA={self.schema!r} is not a plain lower-case identifier "
                "(letters, digits, underscore; at most 41 characters)"
            )
        if self.log_format not in ("auto", "json", "console"):
            raise ConfigError("PGCUE_LOG_FORMAT must be one of auto, json, console")
        for name in (
            "poll_interval",
            "report_interval",
            "rescue_interval",
            "prune_interval",
            "artifact_sweep_interval",
            "listener_probe_interval",
            "listener_probe_timeout",
            "sse_write_timeout",
            "sse_keepalive",
            "migration_lock_timeout",
            "session_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"PGCUE_{name.upper()} must be greater than 0")
        for name in (
            "sse_backlog",
            "sse_replay_page",
            "sse_streams_per_key",
            "claim_batch",
            "api_pool_size",
            "max_body_bytes",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"PGCUE_{name.upper()} must be at least 1")
        if self.claim_ahead_seconds < 0:
            raise ConfigError("PGCUE_CLAIM_AHEAD_SECONDS must be 0 (claim only free slots) or more")
        if self.random_page_cost < 0:
            raise ConfigError("PGCUE_RANDOM_PAGE_COST must be 0 (the server's own setting) or more")
        if self.artifact_quota_bytes < 0:
            raise ConfigError("PGCUE_ARTIFACT_QUOTA_BYTES must be 0 (no limit) or more")

    @property
    def direct_url(self) -> str:
        """Where sessions go: PGCUE_DIRECT_DATABASE_URL, or the one database URL."""
        return self.direct_database_url or self.database_url

    @property
    def pooled(self) -> bool:
        """Queries go through a pooler (PGCUE_DIRECT_DATABASE_URL names another place), so
        no session state may live on a pooled connection."""
        return self.direct_url != self.database_url

    def replace(self, **changes: object) -> Settings:
        return msgspec.structs.replace(self, **changes)

    def channel(self, name: str) -> str:
        """The NOTIFY channel `name` (wake, cancel, events) of this schema."""
        return f"{self.schema}_{name}"


def env_struct(cls: type[T], prefix: str, environ: Mapping[str, str] | None = None) -> T:
    """A settings Struct from `<prefix><FIELD>` variables; tuple fields are comma-separated.
    ConfigError names the variable of a bad value."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):  # type: ignore[arg-type]
        value = env.get(f"{prefix}{field.name.upper()}")
        if value is None:
            continue
        is_tuple = getattr(field.type, "__origin__", None) is tuple or str(field.type).startswith("tuple")
        raw[field.name] = tuple(v.strip() for v in value.split(",") if v.strip()) if is_tuple else value
    try:
        return msgspec.convert(raw, cls, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "$." not in text:  # raised by a __post_init__ check, which names its variable
            raise ConfigError(text) from exc
        name = prefix + text.rsplit("$.", 1)[-1].rstrip("`").upper()
        raise ConfigError(f"bad setting {name}: {text}") from exc


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Read PGCUE_* variables (and DATABASE_URL) into Settings; raise ConfigError on bad values."""
    env = dict(os.environ if environ is None else environ)
    if "PGCUE_DATABASE_URL" not in env and env.get("DATABASE_URL"):
        env["PGCUE_DATABASE_URL"] = env["DATABASE_URL"]
    return env_struct(Settings, "PGCUE_", env)
