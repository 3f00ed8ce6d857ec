"""Applies the migrations (pgcue.migrations, NNNN_name.sql) in order, under an advisory
lock, each in its own transaction with its record, and checks an installed schema.

A migration is never edited once applied: its checksum is recorded, and `check()` (run by
`pgcue migrate --check` and at the start of the API and every worker) refuses a database
whose applied migrations differ from the files, naming the one that changed. Each
migration takes its locks with a lock_timeout, so one stuck behind a long transaction
fails after PGCUE_MIGRATION_LOCK_TIMEOUT seconds, changing nothing, instead of holding
every query on the tables it waits for.

migrations/schema.sql is the whole schema as the migrations make it (reviewed with each
migration; tests/db/test_migrations.py fails when they drift). It is not a migration.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import psycopg

from pgcue.core.errors import SchemaMismatch
from pgcue.core.statements import qualify, run_script_sync, statements_for

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
SCHEMA_FILE = "schema.sql"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    file: Traversable

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    def text(self, schema: str) -> str:
        return qualify(self.file.read_text(), schema)

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.file.read_bytes()).hexdigest()[:16]


def folder() -> Traversable:
    return resources.files("pgcue.migrations")


def available(where: Traversable | None = None) -> list[Migration]:
    """The migration files, in version order; a misnamed or repeated version is an error."""
    found: dict[int, Migration] = {}
    for entry in sorted((where or folder()).iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql") or entry.name == SCHEMA_FILE:
            continue
        match = _NAME.match(entry.name)
        if not match:
            raise SchemaMismatch(f"migration file {entry.name} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise SchemaMismatch(f"two migrations share version {version}: {found[version].file.name}, {entry.name}")
        found[version] = Migration(version, match.group(2), entry)
    return [found[v] for v in sorted(found)]


def latest_version() -> int:
    migrations = available()
    return migrations[-1].version if migrations else 0


def schema_text() -> str:
    """migrations/schema.sql: the current schema, as reviewed."""
    return folder().joinpath(SCHEMA_FILE).read_text()


def applied(conn: psycopg.Connection[Any], schema: str) -> dict[int, str]:
    """{version: checksum} of the migrations applied in `schema` (empty when not installed)."""
    sql = statements_for(schema)
    if not sql.fetch_sync(conn, "schema_installed")[0]["installed"]:
        return {}
    return {row["version"]: row["checksum"] for row in sql.fetch_sync(conn, "list_migrations")}


def _verify(have: dict[int, str], known: list[Migration], schema: str) -> None:
    latest = known[-1].version if known else 0
    if have and max(have) > latest:
        raise SchemaMismatch(
            f"database schema {schema!r} is at migration {max(have)}, newer than this pgcue knows "
            f"(latest {latest}): upgrade pgcue before starting it against this database"
        )
    for m in known:
        stored = have.get(m.version)
        if stored is not None and stored != m.checksum:
            raise SchemaMismatch(
                f"migration {m.label} was edited after it was applied to schema {schema!r} "
                f"(applied checksum {stored}, file {m.checksum}): restore the file as it was applied, "
                "and put the change in a new migration"
            )


def migrate(
    conn: psycopg.Connection[Any], schema: str = "pgcue", *, lock_timeout: float = 10.0, target: int | None = None
) -> list[Migration]:
    """Apply every migration not yet applied (up to version `target`, when given); returns
    those it applied (none the second time).

    Runs under a transaction-scoped advisory lock, so several processes starting at once
    apply each migration once; each migration commits with its record, or not at all.
    """
    sql = statements_for(schema)
    known = available()
    done: list[Migration] = []
    for migration in known:
        if target is not None and migration.version > target:
            break
        try:
            with conn.transaction():
                sql.fetch_sync(conn, "lock_migrations")  # first: even CREATE SCHEMA IF NOT EXISTS races
                sql.fetch_sync(conn, "set_lock_timeout", f"{int(lock_timeout * 1000)}ms")
                sql.fetch_sync(conn, "ensure_schema")
                sql.fetch_sync(conn, "ensure_migrations_table")
                have = applied(conn, schema)
                _verify(have, known, schema)
                if migration.version in have:
                    continue
                run_script_sync(conn, migration.text(schema))
                sql.fetch_sync(conn, "record_migration", migration.version, migration.name, migration.checksum)
                done.append(migration)
        except psycopg.errors.LockNotAvailable:
            raise SchemaMismatch(
                f"migration {migration.label} waited {lock_timeout:g}s for a lock (a long transaction holds one of "
                "its tables) and changed nothing: end that transaction (pgcue.running_jobs, pg_stat_activity) and "
                "run `pgcue migrate` again"
            ) from None
    return done


def pending(conn: psycopg.Connection[Any], schema: str = "pgcue") -> list[Migration]:
    """The migrations not yet applied to `schema` (none: it is current). SchemaMismatch
    when it is newer than this code or an applied migration was edited: no wait fixes
    those."""
    have = applied(conn, schema)
    known = available()
    _verify(have, known, schema)
    return [m for m in known if m.version not in have]


def check(conn: psycopg.Connection[Any], schema: str = "pgcue") -> None:
    """Refuse to run against a schema this code does not match (start-up check)."""
    have = applied(conn, schema)
    known = available()
    _verify(have, known, schema)
    latest = known[-1].version if known else 0
    current = max(have, default=0)
    if current < latest:
        raise SchemaMismatch(
            f"database schema {schema!r} is at migration {current}, this pgcue needs {latest}: run `pgcue migrate`"
        )
