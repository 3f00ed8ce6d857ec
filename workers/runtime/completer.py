"""The completer: records finished attempts in batches. Whatever finished while the last
write was in flight goes in the next one, so a busy worker writes many outcomes per
statement and an idle one writes each at once. An outcome the database refuses fails its
own job with the reason (Queue.record); while the database is unavailable the outcomes
wait and are written when it is back (fenced, so a late write is harmless)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import structlog

from pgcue.core import db
from pgcue.core.models import Completion, Failure
from pgcue.core.queue import Queue

log = structlog.get_logger("pgcue.worker")


@dataclass
class Outcome:
    completion: Completion | None = None
    failure: Failure | None = None
    done: asyncio.Future[str | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def job_id(self) -> uuid.UUID:
        done = self.completion or self.failure
        assert done is not None
        return done.job_id


class Completer:
    name = "completer"

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self._pending: list[Outcome] = []
        self._wake = asyncio.Event()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Outcomes submitted and not yet written."""
        return self._waiting

    async def submit(self, outcome: Outcome) -> str | None:
        """Record `outcome`; returns the job's new state (None: the job was no longer held)."""
        self._pending.append(outcome)
        self._wake.set()
        self._waiting += 1
        try:
            return await outcome.done
        finally:
            self._waiting -= 1

    async def run(self) -> None:
        backoff = 0.1
        if self._pending:  # restarted after a failure: what it kept is still to be written
            self._wake.set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    states = await self.queue.record(
                        [o.completion for o in batch if o.completion], [o.failure for o in batch if o.failure]
                    )
                except BaseException as exc:
                    self._pending = batch + self._pending  # kept: the next try writes them
                    if isinstance(exc, Exception) and db.unavailable(exc):
                        log.warning("recording outcomes failed; will retry", error=db.describe(exc), jobs=len(batch))
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 5.0)
                        continue
                    raise
                backoff = 0.1
                for o in batch:
                    if not o.done.done():
                        o.done.set_result(states.get(o.job_id))
