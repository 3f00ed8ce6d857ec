"""The statements of sql/, loaded once and run unchanged on asyncpg or on psycopg (whose
RawCursor takes the same `$1` placeholders). Only the queue façade (pgcue.core.queue) and
the migrator import this module; `make lint` checks it.

A file whose name starts with `_` is a fragment, not a statement: a statement takes it in
whole with a line `-- include: _name`, so two statements that differ only in what they
return share one reviewed text (sql/_enqueue.sql).

Statements name their schema `pgcue` (objects `pgcue.<name>`) and their notification
channels `pgcue_wake`, `pgcue_cancel`, `pgcue_events`. When PGCUE_SCHEMA names another
schema, qualify() rewrites exactly those words once at load time; the schema name is
checked to be a plain identifier first (pgcue.core.config), so nothing from a request
ever reaches SQL text.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any, TypeAlias

import asyncpg
import psycopg
from psycopg.rows import dict_row

_INCLUDE = re.compile(r"^-- include: (_\w+)$", re.MULTILINE)
_TOKEN = re.compile(r"\bpgcue(?:(?=_(?:wake|cancel|events)\b)|\b)")

Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool


def qualify(sql: str, schema: str) -> str:
    """Point a statement written for schema `pgcue` at `schema`."""
    return sql if schema == "pgcue" else _TOKEN.sub(schema, sql)


class Statements:
    """The statements of sql/, qualified for one schema."""

    def __init__(self, schema: str = "pgcue") -> None:
        self.schema = schema
        folder = resources.files("pgcue.core") / "sql"
        files = {
            entry.name.removesuffix(".sql"): qualify(entry.read_text(), schema)
            for entry in folder.iterdir()
            if entry.name.endswith(".sql")
        }
        fragments = {name: text for name, text in files.items() if name.startswith("_")}

        def include(match: re.Match[str]) -> str:
            try:
                return fragments[match.group(1)]
            except KeyError:
                raise KeyError(f"no fragment sql/{match.group(1)}.sql to include") from None

        self._text = {name: _INCLUDE.sub(include, text) for name, text in files.items() if not name.startswith("_")}

    def __getitem__(self, name: str) -> str:
        try:
            return self._text[name]
        except KeyError:
            raise KeyError(f"no statement sql/{name}.sql") from None

    # asyncpg
    async def fetch(self, conn: Executor, name: str, *args: Any) -> list[asyncpg.Record]:
        return await conn.fetch(self[name], *args)

    async def fetchrow(self, conn: Executor, name: str, *args: Any) -> asyncpg.Record | None:
        return await conn.fetchrow(self[name], *args)

    async def execute(self, conn: Executor, name: str, *args: Any) -> str:
        return await conn.execute(self[name], *args)

    # psycopg
    def fetch_sync(self, conn: psycopg.Connection[Any], name: str, *args: Any) -> list[dict[str, Any]]:
        with psycopg.RawCursor(conn, row_factory=dict_row) as cur:
            cur.execute(self[name], list(args))
            return cur.fetchall() if cur.description else []


@cache
def statements_for(schema: str) -> Statements:
    """The statements for `schema`, loaded once per process."""
    return Statements(schema)


def run_script_sync(conn: psycopg.Connection[Any], script: str) -> None:
    """Run a multi-statement script (a migration file) on psycopg, as it stands."""
    with conn.cursor() as cur:
        cur.execute(script.encode())
