"""Settings from the environment (PGCUE_*), one msgspec Struct."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import msgspec

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")


class ConfigError(ValueError):
    """A setting has a value pgcue cannot use; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = DEFAULT_DATABASE_URL
    schema: str = "pgcue"
    host: str = "127.0.0.1"
    port: int = 8000
    log_format: str = "auto"  # auto | json | console
    log_level: str = "info"
    # Worker timing. The poll is the fallback when a notification is lost.
    poll_interval: float = 1.0
    claim_batch: int = 100
    shutdown_grace: float = 30.0
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 3600.0
    # Coalescing of progress/output writes from running handlers.
    report_interval: float = 0.1
    # Maintenance (one leader at a time).
    rescue_interval: float = 5.0
    prune_interval: float = 60.0
    retention_seconds: float = 7 * 24 * 3600.0
    # Modules to import for their job types (comma-separated in PGCUE_IMPORTS).
    imports: tuple[str, ...] = ()
    artifacts_dir: str = "artifacts"
    # The text job types' model (issue 6): an OpenAI-compatible chat-completions endpoint
    # such as https://api.openai.com/v1; empty means the deterministic offline backend.
    llm_base_url: str = ""
    llm_model: str = "gpt-4o-mini"
    llm_api_key: str = ""
    llm_timeout: float = 120.0
    # 0 turns asyncpg's prepared-statement cache off (needed behind PgBouncer in
    # transaction mode).
    statement_cache_size: int = 100
    # random_page_cost for pgcue's own sessions (0 leaves the server's setting). The jobs
    # table's hot part lives in memory, and at the default of 4 the planner takes a
    # sequential scan of the whole table for a batch of 500 completions, releases or
    # lease extensions (service/sql/complete_jobs.sql); at 1.1, the usual value for data
    # in RAM or on SSD, it probes the primary key per job.
    random_page_cost: float = 1.1
    # The LISTEN connection is proved alive by a NOTIFY round trip this often; no answer
    # within the timeout and it is replaced.
    listener_probe_interval: float = 10.0
    listener_probe_timeout: float = 5.0

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
            "listener_probe_interval",
            "listener_probe_timeout",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"PGCUE_{name.upper()} must be greater than 0")
        if self.random_page_cost < 0:
            raise ConfigError("PGCUE_RANDOM_PAGE_COST must be 0 (the server's own setting) or more")

    def replace(self, **changes: object) -> Settings:
        return msgspec.structs.replace(self, **changes)


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Read PGCUE_* variables (and DATABASE_URL) into Settings; raise ConfigError on bad values."""
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for field in msgspec.structs.fields(Settings):
        value = env.get(f"PGCUE_{field.name.upper()}")
        if value is None:
            continue
        raw[field.name] = tuple(v.strip() for v in value.split(",") if v.strip()) if field.name == "imports" else value
    if "database_url" not in raw and env.get("DATABASE_URL"):
        raw["database_url"] = env["DATABASE_URL"]
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"bad setting: {exc} (set it through the matching PGCUE_* variable)") from exc
