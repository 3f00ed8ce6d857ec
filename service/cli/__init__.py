"""The command line, `pgcue …`: the one layer that starts the API and the workers."""

from __future__ import annotations

import sys

SERVER_MODULES = ("asyncpg", "psycopg", "litestar", "uvicorn", "structlog", "prometheus_client", "uvloop")


def main(argv: list[str] | None = None) -> int:
    try:
        from pgcue.cli.main import main as run
    except ModuleNotFoundError as exc:
        if exc.name not in SERVER_MODULES:
            raise
        print(
            f"pgcue: the command line runs the server, which needs {exc.name}: pip install 'pgcue[server]' "
            "(this install has the Python client only)",
            file=sys.stderr,
        )
        return 1
    return run(argv)


__all__ = ["main"]
