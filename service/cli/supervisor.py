"""Dev supervisor: one worker process per job type, restarted when it crashes.

In production each type is its own deployment (ops/); this is for `make run` and a
single machine. SIGTERM/SIGINT is passed on to every child, which then shuts down
gracefully; the supervisor exits when they have.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from pgcue.core.config import Settings

RESTART_BACKOFF_MAX = 30.0


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started: float = field(default=0.0)

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(self.argv, env=env)
        self.started = time.monotonic()
        print(f"pgcue: started {self.name} (pid {self.proc.pid})", flush=True)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pgcue.cli", *args]


def run_children(children: list[Child], env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.proc and child.proc.poll() is None:
                child.proc.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.start(env)
    while True:
        alive = False
        for child in children:
            assert child.proc is not None
            code = child.proc.poll()
            if code is None:
                alive = True
                continue
            if stopping:
                continue
            # Crashed: restart, backing off if it keeps crashing soon after start.
            ran = time.monotonic() - child.started
            child.restarts = 0 if ran > 60 else child.restarts + 1
            delay = min(RESTART_BACKOFF_MAX, 0.5 * 2**child.restarts) if child.restarts else 0
            print(f"pgcue: {child.name} exited with {code}; restarting in {delay:g}s", file=sys.stderr, flush=True)
            time.sleep(delay)
            child.start(env)
            alive = True
        if stopping and not alive:
            return 0
        time.sleep(0.2)


def supervise(types: list[str], imports: list[str]) -> int:
    extra = [arg for module in imports for arg in ("--import", module)]
    children = [Child(f"worker {name}", _cli("worker", "--type", name, *extra)) for name in types]
    return run_children(children)


def run_dev_stack(settings: Settings, types: list[str]) -> int:
    env = dict(os.environ, PGCUE_DATABASE_URL=settings.database_url)
    children = [Child("api", _cli("serve"))]
    children += [Child(f"worker {name}", _cli("worker", "--type", name)) for name in types]
    print(f"pgcue: API on http://{settings.host}:{settings.port}  (workers: {', '.join(types)})", flush=True)
    print(
        "pgcue: try  .venv/bin/pgcue jobs enqueue --type echo --channel demo --payload '{\"hi\":1}' --wait 10",
        flush=True,
    )
    return run_children(children, env)
