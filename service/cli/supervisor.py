"""The local supervisor: one worker process per job type (and, for `pgcue dev`, the API),
restarted when one crashes.

In production each type is its own deployment (ops/); this is for `make run` and a single
machine. A child that exits with status 78 (EX_CONFIG: the database refuses our
credentials, the schema is not the one it needs, a setting is wrong) is not restarted,
since no restart can fix it; the supervisor says so, with the child's last words, and the
rest goes on. SIGTERM/SIGINT is passed on to every child, which then shuts down
gracefully; the supervisor exits when they have.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from pgcue.core.components import EXIT_FATAL_CONFIG
from pgcue.core.config import Settings

RESTART_BACKOFF_MAX = 30.0
METRICS_BASE_PORT = 9101


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started: float = field(default=0.0)
    given_up: bool = False
    last_words: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=5))

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(self.argv, env=env, stderr=subprocess.PIPE)
        self.started = time.monotonic()
        threading.Thread(target=self._relay, args=(self.proc,), daemon=True).start()
        print(f"pgcue: started {self.name} (pid {self.proc.pid})", flush=True)

    def _relay(self, proc: subprocess.Popen[bytes]) -> None:
        """Pass the child's stderr through, keeping its last lines for a fatal exit."""
        assert proc.stderr is not None
        for raw in iter(proc.stderr.readline, b""):
            sys.stderr.buffer.write(raw)
            sys.stderr.flush()
            self.last_words.append(raw.decode(errors="replace").rstrip())


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
            if child.given_up:
                continue
            assert child.proc is not None
            code = child.proc.poll()
            if code is None:
                alive = True
                continue
            if stopping:
                continue
            if code == EXIT_FATAL_CONFIG:
                child.given_up = True
                why = next((line for line in reversed(child.last_words) if line.strip()), "no message")
                print(
                    f"pgcue: {child.name} cannot start ({why}); not restarting it: fix the cause, then run again",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            # Crashed: restart, backing off if it keeps crashing soon after start.
            ran = time.monotonic() - child.started
            child.restarts = 0 if ran > 60 else child.restarts + 1
            delay = min(RESTART_BACKOFF_MAX, 0.5 * 2**child.restarts) if child.restarts else 0
            print(f"pgcue: {child.name} exited with {code}; restarting in {delay:g}s", file=sys.stderr, flush=True)
            time.sleep(delay)
            child.start(env)
            alive = True
        if not alive:
            return 0 if stopping else 1
        time.sleep(0.2)


def _workers(types: list[str], imports: list[str], metrics_base: int | None) -> list[Child]:
    extra = [arg for module in imports for arg in ("--import", module)]
    children = []
    for n, name in enumerate(types):
        argv = _cli("worker", "--type", name, *extra)
        label = f"worker {name}"
        if metrics_base:
            port = metrics_base + n
            argv += ["--metrics-port", str(port)]
            label += f" (metrics http://127.0.0.1:{port}/metrics)"
        children.append(Child(label, argv))
    return children


def supervise(types: list[str], imports: list[str], *, metrics_base: int | None = None) -> int:
    return run_children(_workers(types, imports, metrics_base))


def run_dev_stack(settings: Settings, types: list[str]) -> int:
    env = dict(os.environ, PGCUE_DATABASE_URL=settings.database_url)
    children = [Child("api", _cli("serve"))]
    children += _workers(types, [], METRICS_BASE_PORT)
    print(f"pgcue: API on http://{settings.host}:{settings.port}  (workers: {', '.join(types)})", flush=True)
    print(
        "pgcue: try  .venv/bin/pgcue jobs enqueue --type echo --channel demo --payload '{\"hi\":1}' --wait 10",
        flush=True,
    )
    return run_children(children, env)
