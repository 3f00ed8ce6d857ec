"""Background components and their supervision: the one start/stop contract of every loop
a pgcue process runs beside its main work (the worker's heartbeat, reporter, completer,
listener, producers and maintenance; the API's listener and event poller).

A component has a `name` and an `async run()` that works until it is cancelled (stop) and
raises when it fails. The Supervisor starts each in a task and restarts one that raised,
with a backoff; one that keeps failing (more than `max_restarts` times within `window`
seconds) is fatal: `on_fatal` is called, and the process is expected to exit non-zero so
that its own supervisor (systemd, Kubernetes, `pgcue workers`) starts it afresh. Nothing
dies silently: every failure is logged with its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import structlog

log = structlog.get_logger("pgcue.components")

# The exit status of a process that stopped because a component kept failing (EX_SOFTWARE).
EXIT_COMPONENT_FAILED = 70
# The exit status of a process that cannot work until an operator acts (EX_CONFIG): the
# database refuses its credentials, the schema is not the one it needs. Restarting it
# changes nothing, and `pgcue workers` / `pgcue dev` do not.
EXIT_FATAL_CONFIG = 78
# How long a stopping component may go on after its cancellation before it is cancelled again.
RECANCEL_SECONDS = 1.0


class Component(Protocol):
    name: str

    async def run(self) -> None:
        """Work until cancelled; raise on failure (the supervisor restarts it)."""
        ...


class Supervisor:
    def __init__(
        self,
        on_fatal: Callable[[str, BaseException], None],
        *,
        max_restarts: int = 5,
        window: float = 60.0,
        logger: Any = None,
    ) -> None:
        self.on_fatal = on_fatal
        self.max_restarts = max_restarts
        self.window = window
        self.log = logger or log
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.restarts: dict[str, int] = {}

    def start(self, component: Component) -> None:
        if component.name in self.tasks:
            raise ValueError(f"a component named {component.name!r} is already running")
        self.restarts[component.name] = 0
        self.tasks[component.name] = asyncio.create_task(self._supervise(component), name=component.name)

    async def stop(self, *names: str) -> None:
        """Cancel the named components (all when none is named) and wait for them.

        A component can lose its cancellation: when the database goes away just as it is
        cancelled, the error its unwinding raises (asyncpg rolling back a transaction on a
        connection that has just closed) replaces the CancelledError, and a loop that rides
        out an unavailable database takes it for one and goes on, waiting for good. So a
        component still running a moment after its cancellation is cancelled again."""
        chosen = [self.tasks.pop(n) for n in (names or list(self.tasks)) if n in self.tasks]
        for task in chosen:
            task.cancel()
        for task in chosen:
            while not task.done():
                await asyncio.wait({task}, timeout=RECANCEL_SECONDS)
                if not task.done():
                    self.log.warning(
                        "component ignored its cancellation; cancelling it again", component=task.get_name()
                    )
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _supervise(self, component: Component) -> None:
        failures: deque[float] = deque()
        backoff = 0.1
        while True:
            try:
                await component.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                now = time.monotonic()
                failures.append(now)
                while failures and failures[0] < now - self.window:
                    failures.popleft()
                self.restarts[component.name] += 1
                self.log.error(
                    "component failed; restarting",
                    component=component.name,
                    error=f"{type(exc).__name__}: {exc}",
                    failures_in_window=len(failures),
                    exc_info=exc,
                )
                if len(failures) > self.max_restarts:
                    self.log.critical(
                        "component keeps failing; stopping the process", component=component.name, window=self.window
                    )
                    self.on_fatal(component.name, exc)
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
