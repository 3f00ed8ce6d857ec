"""Group commit for single enqueues: concurrent `enqueue` calls share one transaction.

The API enqueues one job per `POST /api/jobs`. Done one by one, each request costs a
commit (a WAL flush) and a NOTIFY, and PostgreSQL serialises the commits of notifying
transactions on one lock, so under load the requests queue behind each other's fsync.
An EnqueueBatcher collects the jobs that arrive while a flush is in flight and enqueues
them together through Queue.enqueue_returning: one statement (one round trip, one flush,
one NOTIFY) per batch, whatever its size, answering with every job as stored.

Nothing waits on a timer: a job that arrives when no flush is running starts one at the
next turn of the event loop, so at low load a request pays no extra latency; under load
the batches grow by themselves (`make bench` http workload measures it).

Every caller gets exactly what a lone enqueue would have given it. A batch is one
statement, so an error writes nothing; unless the error says the database is unavailable,
each job of the batch is then enqueued again on its own, so only the job at fault gets
the error (pgcue's own, or whatever PostgreSQL refused in it) and every other request of
the batch succeeds: one tenant's bad input never fails another's request. A job whose
idempotency or unique key is taken is skipped by the insert and then enqueued on its own,
which resolves it as a lone enqueue would (the existing job, or onConflict's answer: a
409 for reject). When the database is unavailable every caller of the batch gets that
error (a 503), and none of its jobs exists.
"""

from __future__ import annotations

import asyncio

from pgcue.core import db
from pgcue.core.models import Job, NewJob
from pgcue.core.queue import Queue

Pending = tuple[NewJob, "asyncio.Future[Job]"]


class EnqueueBatcher:
    """Coalesces concurrent single enqueues into `Queue.enqueue_returning` calls.

    `max_batch` bounds one statement; `max_inflight` flushes may run at once (one
    commits while the next one inserts), each on its own pooled connection.
    """

    def __init__(self, queue: Queue, *, max_batch: int = 256, max_inflight: int = 2) -> None:
        self.queue = queue
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self._pending: list[Pending] = []
        self._flushing = 0  # flushers that will still look at _pending before they end
        self._tasks: set[asyncio.Task[None]] = set()  # a reference to each, until it ends

    async def enqueue(self, job: NewJob) -> Job:
        """Enqueue `job` (with whatever else is waiting) and return it as stored."""
        future: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        if self._flushing < self.max_inflight:
            self._flushing += 1
            task = asyncio.create_task(self._flush_pending())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _flush_pending(self) -> None:
        # The count goes down in the same step in which the loop sees _pending empty, not
        # in a done-callback a loop turn later: a job appended in between would otherwise
        # find every flusher slot taken by flushers that have already ended, and wait forever.
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                await self._flush(batch)
        finally:
            self._flushing -= 1

    async def _flush(self, batch: list[Pending]) -> None:
        try:
            stored = await self.queue.enqueue_returning([job for job, _ in batch])
        except asyncio.CancelledError as exc:
            for _, future in batch:
                _settle(future, exc=exc)
            raise
        except Exception as exc:  # nothing was written
            if len(batch) == 1 or db.unavailable(exc):
                for _, future in batch:
                    _settle(future, exc=exc)
                return
            await self._one_by_one(batch)
        else:
            for (_, future), job in zip(batch, stored, strict=True):
                if job is not None:
                    _settle(future, job)
            # A job whose idempotency or unique key was taken was skipped: resolve each on
            # its own (the existing job, or its onConflict answer).
            await self._one_by_one(
                [(job, future) for (job, future), done in zip(batch, stored, strict=True) if done is None]
            )

    async def _one_by_one(self, batch: list[Pending]) -> None:
        """Each job in its own enqueue: after a batch failed because of one of its jobs
        (it wrote nothing), or for the jobs it skipped because their key was taken."""
        for n, (job, future) in enumerate(batch):
            try:
                stored = await self.queue.enqueue(job)
            except BaseException as exc:
                _settle(future, exc=exc)
                if isinstance(exc, asyncio.CancelledError):
                    for _, rest in batch[n + 1 :]:
                        _settle(rest, exc=exc)
                    raise
            else:
                _settle(future, stored)


def _settle(future: asyncio.Future[Job], job: Job | None = None, *, exc: BaseException | None = None) -> None:
    """Resolve a caller's future unless the caller stopped waiting (client went away)."""
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    elif job is not None:
        future.set_result(job)
