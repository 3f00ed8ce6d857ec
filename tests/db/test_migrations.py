"""Migrations: idempotent, safe to run concurrently, replayed to the reviewed snapshot,
and refused by a pgcue that is older than the database."""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from pgcue.core import migrate
from tests.conftest import run_cli

SNAPSHOT = Path(__file__).resolve().parents[2] / "migrations" / "schema.sql"  # the reviewed current schema


def dump_schema(dsn: str) -> str:
    """pg_dump of the pgcue schema, without the parts that differ from run to run."""
    url = urlsplit(dsn)
    out = subprocess.run(
        [
            "pg_dump",
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--schema=pgcue",
            "-h",
            url.hostname or "127.0.0.1",
            "-p",
            str(url.port or 5432),
            "-U",
            url.username or "postgres",
            url.path.lstrip("/"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    lines = [
        ln
        for ln in out.splitlines()
        if ln.strip()
        and not ln.startswith("--")
        and not ln.startswith("SET ")
        and not ln.startswith("SELECT pg_catalog.set_config")
        and not ln.startswith("\\restrict")
        and not ln.startswith("\\unrestrict")
    ]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def test_migrate_twice_changes_nothing(empty_database: str) -> None:
    first = run_cli("migrate", dsn=empty_database)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_core" in first.stdout
    before = dump_schema(empty_database)
    second = run_cli("migrate", dsn=empty_database)
    assert second.returncode == 0 and "already current" in second.stdout
    assert dump_schema(empty_database) == before
    assert run_cli("migrate", "--check", dsn=empty_database).returncode == 0


def test_concurrent_migrators_apply_each_migration_once(empty_database: str) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(empty_database, autocommit=True) as conn:
                results.append([m.version for m in migrate.migrate(conn)])
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    applied = sorted(v for r in results for v in r)
    assert applied == [m.version for m in migrate.available()]


def test_replayed_migrations_match_the_reviewed_schema_snapshot(empty_database: str) -> None:
    """The snapshot is the whole schema in one reviewed file; regenerate it with
    `make schema-snapshot` when a migration is added, and review the diff."""
    assert run_cli("migrate", dsn=empty_database).returncode == 0
    assert dump_schema(empty_database) == SNAPSHOT.read_text()


def test_a_schema_newer_than_the_code_is_refused(empty_database: str) -> None:
    assert run_cli("migrate", dsn=empty_database).returncode == 0
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("INSERT INTO pgcue.schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')")
    for args in (["migrate", "--check"], ["migrate"], ["worker", "--type", "echo"], ["serve"]):
        result = run_cli(*args, dsn=empty_database, timeout=30)
        # A process that cannot run against this schema exits 78: no restart can help.
        assert result.returncode == (78 if args[0] in ("worker", "serve") else 1), (args, result.stderr)
        assert "newer than this pgcue knows" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_an_outdated_schema_is_refused_at_start(empty_database: str) -> None:
    result = run_cli("worker", "--type", "echo", dsn=empty_database, timeout=30)
    assert result.returncode == 78
    assert "run `pgcue migrate`" in result.stderr
