"""`pgcue serve` in its own process, on a port that stays the same when it is restarted
(a client's base URL outlives the server process, as behind a fixed address)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import httpx

from pgcue.core.config import Settings
from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    def __init__(self, settings: Settings, options: dict[str, Any] | None = None, grace: float = 3.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(
            os.environ,
            PGCUE_DATABASE_URL=settings.database_url,
            PGCUE_SCHEMA=settings.schema,
            PGCUE_ARTIFACTS_DIR=settings.artifacts_dir,
            PGCUE_SHUTDOWN_GRACE=str(grace),
            PGCUE_LOG_FORMAT="json",
            **{f"PGCUE_{name.upper()}": str(value) for name, value in (options or {}).items()},
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> ServeProcess:
        argv = [sys.executable, "-m", "pgcue.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.starts += 1
        return self

    async def ready(self, timeout: float = 40.0) -> ServeProcess:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as c:
            while True:  # a process offers no readiness event; poll /readyz, bounded
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise AssertionError(f"API process exited with {self.proc.returncode}: {err[-2000:]}")
                try:
                    if (await c.get("/readyz")).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError("API process did not start")
                await asyncio.sleep(0.05)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the process and wait for it to exit (SIGKILL past `timeout`)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return await asyncio.to_thread(self.proc.wait, 10)

    async def restart(self, sig: int = signal.SIGTERM) -> ServeProcess:
        await self.stop(sig)
        return await self.start().ready()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
