"""Leader election for maintenance: a session advisory lock, taken on a pooled connection
that is kept for as long as the process leads (Queue.upkeep.try_lead), or on a direct
session of its own when queries go through a transaction pooler. Followers hold no
connection for it; they try again every PGCUE_RESCUE_INTERVAL."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from pgcue.core import db
from pgcue.core.queue import Queue
from pgcue.core.queue.upkeep import Connect, Leadership

log = structlog.get_logger("pgcue.maintenance")


class Leader:
    name = "leader"

    def __init__(self, queue: Queue, interval: float, connect: Connect | None = None) -> None:
        """`connect`: a direct session for the lock, when queries go through a pooler."""
        self.queue = queue
        self.interval = interval
        self.connect = connect
        self.leading = asyncio.Event()
        self._lease: Leadership | None = None

    async def run(self) -> None:
        try:
            while True:
                try:
                    if self._lease is None:
                        self._lease = await self.queue.upkeep.try_lead(self.connect)
                        if self._lease is not None:
                            self.leading.set()
                            log.info("leading maintenance")
                    else:
                        await self._lease.check()
                except Exception as exc:
                    if not (db.unavailable(exc) or isinstance(exc, ConnectionError)):
                        raise
                    if self._lease is not None:
                        log.warning("maintenance leadership lost", error=db.describe(exc))
                    await self._step_down()
                await asyncio.sleep(self.interval)
        finally:
            await self._step_down()

    async def _step_down(self) -> None:
        self.leading.clear()
        lease, self._lease = self._lease, None
        if lease is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(lease.release())
