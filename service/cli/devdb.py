"""The embedded default database of `make run` when no DATABASE_URL is configured.

In order: a PostgreSQL answering on localhost:5432; else a private throw-away cluster
under .data/ made with the initdb/pg_ctl this machine has; else the `pgserver` wheel
(PostgreSQL packaged for pip, an optional dev dependency). Says which it used.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from pathlib import Path

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class NoDatabase(RuntimeError):
    pass


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


def _private_cluster(data: Path, bindir: Path, port: int = 54329) -> str:
    pgdata = data / "pg"
    sockdir = data / "sock"
    sockdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
        shutil.chown(data, "postgres")
        shutil.chown(sockdir, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    if not (pgdata / "PG_VERSION").exists():
        subprocess.run(
            [*run_as, str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust"],
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
        )
    if not _port_open("127.0.0.1", port):
        subprocess.run(
            [
                *run_as,
                str(bindir / "pg_ctl"),
                "-D",
                str(pgdata),
                "-l",
                str(data / "pg.log"),
                "-w",
                "-o",
                f"-p {port} -k {sockdir} -c listen_addresses=127.0.0.1",
                "start",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
        )
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def _pgserver(data: Path) -> str:
    try:
        import pgserver
    except ImportError as exc:
        raise NoDatabase(
            "no PostgreSQL found: set DATABASE_URL, install PostgreSQL, or `pip install pgserver`"
        ) from exc
    server = pgserver.get_server(str(data / "pgserver"), cleanup_mode=None)
    return str(server.get_uri())


def resolve(data: Path) -> tuple[str, str]:
    """(database URL, how it was found) for the dev stack; a private cluster lives in `data`."""
    if os.environ.get("DATABASE_URL") or os.environ.get("PGCUE_DATABASE_URL"):
        url = os.environ.get("PGCUE_DATABASE_URL") or os.environ["DATABASE_URL"]
        return url, "configured (DATABASE_URL)"
    if _port_open("127.0.0.1", 5432):
        return LOCAL_URL, "the PostgreSQL answering on 127.0.0.1:5432"
    data.mkdir(mode=0o700, exist_ok=True)
    bindir = _pg_bin()
    if bindir is not None:
        return _private_cluster(data, bindir), f"a private cluster under {data} (made with {bindir}/initdb)"
    return _pgserver(data), f"pgserver (PostgreSQL from a wheel) under {data}"
