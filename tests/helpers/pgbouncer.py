"""A real PgBouncer (Debian's package) in transaction mode, in front of the test PostgreSQL,
on a loopback port of its own: `pytest --pgbouncer` (or PGCUE_TEST_PGBOUNCER=1) points the
test fixtures' queries through it, with the LISTEN connections and sessions direct
(PGCUE_DIRECT_DATABASE_URL), as docs/deploy.md tells a studio to run pgcue behind one."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

BINARY = "/usr/sbin/pgbouncer"


@dataclass
class PgBouncer:
    proc: subprocess.Popen[bytes]
    port: int
    folder: Path
    user: str

    def dsn(self, direct: str) -> str:
        """`direct` (a DSN of the test PostgreSQL) through this PgBouncer."""
        parts = urlsplit(direct)
        user = f"{parts.username}@" if parts.username else ""
        return parts._replace(netloc=f"{user}127.0.0.1:{self.port}").geturl()

    def admin_dsn(self) -> str:
        """PgBouncer's own console (SHOW STATS, SHOW POOLS)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/pgbouncer"

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: immediate shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(direct: str) -> PgBouncer:
    """PgBouncer in transaction mode in front of the server `direct` names, for every
    database on it (the per-test clones come and go); trust auth, loopback only."""
    if not os.path.exists(BINARY):
        raise RuntimeError(f"{BINARY} not found: apt-get install pgbouncer")
    parts = urlsplit(direct)
    user = parts.username or "postgres"
    port = _free_port()
    folder = Path(tempfile.mkdtemp(prefix="pgcue-pgbouncer-"))
    (folder / "users.txt").write_text(f'"{user}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "\n".join(
            [
                "[databases]",
                f"* = host={parts.hostname or '127.0.0.1'} port={parts.port or 5432}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {folder / 'users.txt'}",
                "pool_mode = transaction",
                f"admin_users = {user}",
                "stats_period = 1",
                "max_client_conn = 1000",
                "default_pool_size = 40",
                # What asyncpg and psycopg may send at start-up besides what PgBouncer knows.
                "ignore_startup_parameters = extra_float_digits",
                f"logfile = {folder / 'pgbouncer.log'}",
                f"pidfile = {folder / 'pgbouncer.pid'}",
                "log_connections = 0",
                "log_disconnections = 0",
                "",
            ]
        )
    )
    argv = [BINARY, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        account = pwd.getpwnam("postgres")
        os.chown(folder, account.pw_uid, account.pw_gid)
        for child in folder.iterdir():
            os.chown(child, account.pw_uid, account.pw_gid)
        argv[1:1] = ["-u", "postgres"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    bouncer = PgBouncer(proc, port, folder, user)
    deadline = time.monotonic() + 20
    probe = bouncer.dsn(direct)
    while True:
        try:
            with psycopg.connect(probe, connect_timeout=2, prepare_threshold=None) as conn:
                conn.execute("SELECT 1")
            return bouncer
        except psycopg.OperationalError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr and proc.poll() is not None else ""
                bouncer.stop()
                raise RuntimeError(f"PgBouncer did not answer on 127.0.0.1:{port}: {exc} {err}") from exc
            time.sleep(0.1)
