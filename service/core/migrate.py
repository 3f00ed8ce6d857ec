"""Applies migrations/ in order, under an advisory lock, each in its own transaction."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from pgcue.core.errors import SchemaMismatch
from pgcue.core.statements import qualify, run_script_sync, sql_for

MIGRATIONS_DIR = Path(str(resources.files("pgcue.migrations")))
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    def text(self, schema: str) -> str:
        return qualify(self.path.read_text(), schema)

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]


def available(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files, in version order; a misnamed or repeated version is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise SchemaMismatch(f"migration file {path.name} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise SchemaMismatch(f"two migrations share version {version}: {found[version].path.name}, {path.name}")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


def latest_version() -> int:
    migrations = available()
    return migrations[-1].version if migrations else 0


def applied(conn: psycopg.Connection[Any], schema: str) -> dict[int, str]:
    """{version: checksum} of the migrations applied in `schema` (empty when not installed)."""
    sql = sql_for(schema)
    if not sql.fetch_sync(conn, "schema_installed")[0]["installed"]:
        return {}
    return {row["version"]: row["checksum"] for row in sql.fetch_sync(conn, "list_migrations")}


def migrate(conn: psycopg.Connection[Any], schema: str = "pgcue") -> list[Migration]:
    """Apply every migration not yet applied; returns those it applied (none the second time).

    Runs under a transaction-scoped advisory lock, so several processes starting at once
    apply each migration once; each migration commits with its record, or not at all.
    """
    sql = sql_for(schema)
    done: list[Migration] = []
    known = {m.version for m in available()}
    for migration in available():
        with conn.transaction():
            sql.fetch_sync(conn, "lock_migrations")  # first: even CREATE SCHEMA IF NOT EXISTS races
            sql.fetch_sync(conn, "ensure_schema")
            sql.fetch_sync(conn, "ensure_migrations_table")
            have = applied(conn, schema)
            if have and max(have) > max(known):
                raise SchemaMismatch(_too_new(max(have), schema))
            if migration.version in have:
                continue
            run_script_sync(conn, migration.text(schema))
            sql.fetch_sync(conn, "record_migration", migration.version, migration.name, migration.checksum)
            done.append(migration)
    return done


def check(conn: psycopg.Connection[Any], schema: str = "pgcue") -> None:
    """Refuse to run against a schema this code does not match (start-up check)."""
    have = applied(conn, schema)
    latest = latest_version()
    current = max(have, default=0)
    if current > latest:
        raise SchemaMismatch(_too_new(current, schema))
    if current < latest:
        raise SchemaMismatch(
            f"database schema {schema!r} is at migration {current}, this pgcue needs {latest}: run `pgcue migrate`"
        )


def _too_new(version: int, schema: str) -> str:
    return (
        f"database schema {schema!r} is at migration {version}, newer than this pgcue knows "
        f"(latest {latest_version()}): upgrade pgcue before starting it against this database"
    )
