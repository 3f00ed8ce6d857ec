"""`make schema-snapshot`: replay migrations/ into a scratch database and write the
resulting schema to migrations/schema.sql (tests/db/test_migrations.py compares them)."""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql

from pgcue.core import migrate
from tests.conftest import BASE_DSN, dsn_for
from tests.db.test_migrations import SNAPSHOT, dump_schema


def main() -> None:
    name = f"pgcue_snapshot_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(BASE_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(dsn_for(name), autocommit=True) as conn:
            migrate.migrate(conn)
        SNAPSHOT.write_text(dump_schema(dsn_for(name)))
        print(f"wrote {SNAPSHOT}")
    finally:
        with psycopg.connect(BASE_DSN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
