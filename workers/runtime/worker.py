"""The worker process: claim loop, concurrency, leases, reporting, completion, shutdown.

One process runs one or more job types. Per type, a producer claims jobs in batches up to
the type's free slots and starts a task per job. A notification on `<schema>_wake` wakes
the producer at once; a poll every PGCUE_POLL_INTERVAL is the fallback when one is lost.
A heartbeat extends every held lease in one statement and learns of cancellations; the
reporter writes buffered progress/output; the completer writes outcomes in batches. On
SIGTERM the worker stops claiming, lets running jobs finish for the grace period, then
gives the rest back without charging their attempt.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
from pgcue.core import db, metrics
from pgcue.core.config import Settings
from pgcue.core.db import DB_ERRORS
from pgcue.core.errors import InvalidJob
from pgcue.core.queue import Completion, Failure, Queue, Report, json_text, retry_delay
from pgcue.core.statements import channel
from pgcue.workers.runtime import registry
from pgcue.workers.runtime.context import JobCancelled, JobContext, LeaseLost, PermanentError, Result, Suspended
from pgcue.workers.runtime.maintenance import Maintenance
from pgcue.workers.runtime.registry import TypeSpec

log = structlog.get_logger("pgcue.worker")


@dataclass
class Running:
    spec: TypeSpec
    ctx: JobContext
    deadline: float  # time.monotonic() past which the attempt has timed out
    task: asyncio.Task[None] | None = None
    in_handler: bool = False  # the handler is running (only then may a timeout cancel the task)
    timed_out: bool = False  # set by Worker._enforce_timeouts just before it cancels the task


@dataclass
class _Outcome:
    completion: Completion | None = None
    failure: Failure | None = None
    done: asyncio.Future[str | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def apply_memory_limit(megabytes: int) -> None:
    """Cap this process's address space, the budget seed 002 gives each worker kind.
    Children (ffmpeg, espeak-ng) inherit it."""
    limit = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Reporter:
    """Writes the buffered progress, stage and output of every running job together."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._dirty: dict[uuid.UUID, JobContext] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    def touch(self, ctx: JobContext) -> None:
        self._dirty[ctx.id] = ctx

    async def flush(self) -> None:
        async with self._lock:
            dirty, self._dirty = self._dirty, {}
            reports = []
            for ctx in dirty.values():
                if ctx.lost or not ctx.has_pending():
                    continue
                progress, message, stage, events = ctx.take_pending()
                reports.append(Report(ctx.id, ctx.attempt, progress, message, stage, events))
            if not reports:
                return
            held = await self.worker.queue.report(reports)
            for r in reports:
                if r.job_id not in held:
                    self.worker.lost(r.job_id)

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except DB_ERRORS as exc:
                log.warning("report failed; will retry", error=str(exc))


class Completer:
    """Records outcomes in batches: whatever finished while the last write was in flight
    goes in the next one, so a busy worker writes many outcomes per statement and an idle
    one writes each at once."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self._pending: list[_Outcome] = []
        self._wake = asyncio.Event()

    async def submit(self, outcome: _Outcome) -> str | None:
        self._pending.append(outcome)
        self._wake.set()
        return await outcome.done

    async def run(self) -> None:
        backoff = 0.1
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    states = await self.queue.complete([o.completion for o in batch if o.completion])
                    states.update(await self.queue.fail([o.failure for o in batch if o.failure]))
                except DB_ERRORS as exc:
                    # Keep them: the database may be restarting. Fenced writes make a late
                    # retry harmless if the lease was lost meanwhile.
                    log.warning("recording outcomes failed; will retry", error=str(exc), jobs=len(batch))
                    self._pending = batch + self._pending
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
                for o in batch:
                    job_id = (o.completion or o.failure).job_id  # type: ignore[union-attr]
                    if not o.done.done():
                        o.done.set_result(states.get(job_id))


class Worker:
    def __init__(
        self,
        settings: Settings,
        specs: list[TypeSpec],
        *,
        concurrency: int | None = None,
        worker_id: str | None = None,
        maintenance: bool = True,
    ) -> None:
        if not specs:
            raise ValueError("a worker needs at least one job type")
        missing = [s.name for s in specs if s.handler is None]
        if missing:
            raise ValueError(f"no handler registered for job type(s): {', '.join(missing)}")
        self.settings = settings
        self.specs = {s.name: s for s in specs}
        self.limits = {s.name: concurrency or s.concurrency for s in specs}
        self.worker_id = worker_id or new_worker_id()
        self.with_maintenance = maintenance
        self.running: dict[uuid.UUID, Running] = {}
        self.busy = dict.fromkeys(self.specs, 0)
        self._wake = {name: asyncio.Event() for name in self.specs}
        self._maybe_more = dict.fromkeys(self.specs, False)
        self._stop = asyncio.Event()
        self._grace = settings.shutdown_grace
        self._released: list[tuple[uuid.UUID, int]] = []
        self._probe: tuple[str, asyncio.Future[None]] | None = None
        self._cursor = dict.fromkeys(self.specs, "")  # where each type's next claim starts round the channels
        self._limited: dict[str, bool] = {}  # types claimed under a fleet-wide lock
        self._probe_seq = 0
        self.stats = {"claimed": 0, "completed": 0, "failed": 0, "released": 0}
        self.log = log.bind(worker_id=self.worker_id)

    # --- life --------------------------------------------------------------------------

    def request_stop(self, grace: float | None = None) -> None:
        """Stop claiming; finish running jobs within `grace` seconds, then give them back."""
        if self._stop.is_set():
            self._grace = 0.0  # a second signal: stop now
        elif grace is not None:
            self._grace = grace
        self._stop.set()

    async def run(self) -> None:
        s = self.settings
        size = max(4, len(self.specs) + 3)
        self.pool = await db.create_pool(s, min_size=2, max_size=size, application_name="pgcue-worker")
        self.queue = Queue(self.pool, s.schema)
        self.reporter = Reporter(self)
        self.completer = Completer(self.queue)
        await self.queue.register_types([spec.row() for spec in self.specs.values()])
        await self.queue.register_schedules(registry.all_schedules())
        await self.queue.sql.execute(
            self.pool,
            "register_worker",
            self.worker_id,
            socket.gethostname(),
            os.getpid(),
            sorted(self.specs),
            sum(self.limits.values()),
        )
        await self._refresh_policies()
        background = [
            asyncio.create_task(self._listen(), name="listener"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self.reporter.run(s.report_interval), name="reporter"),
            asyncio.create_task(self.completer.run(), name="completer"),
            asyncio.create_task(self._enforce_timeouts(), name="timeouts"),
        ]
        if self.with_maintenance:
            background.append(asyncio.create_task(Maintenance(s, self.queue).run(), name="maintenance"))
        producers = [
            asyncio.create_task(self._produce(spec), name=f"claim:{name}") for name, spec in self.specs.items()
        ]
        self.log.info("worker started", types=sorted(self.specs), concurrency=self.limits)
        try:
            await self._stop.wait()
        finally:
            for task in producers:
                task.cancel()
            await asyncio.gather(*producers, return_exceptions=True)
            await self._drain()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            try:
                await self.queue.sql.execute(self.pool, "stop_worker", self.worker_id)
            except DB_ERRORS:
                pass
            await self.pool.close()
            self.log.info("worker stopped", **self.stats)

    async def _drain(self) -> None:
        """Wait up to the grace period for running jobs, then give the rest back."""
        tasks = [r.task for r in self.running.values() if r.task]
        if tasks:
            self.log.info("waiting for running jobs", jobs=len(tasks), grace=self._grace)
            deadline = time.monotonic() + self._grace
            while tasks and time.monotonic() < deadline:
                # Re-check now and then, so a second signal (grace 0) cuts the wait short.
                _, pending = await asyncio.wait(tasks, timeout=min(0.2, max(0.0, deadline - time.monotonic())))
                tasks = list(pending)
                if self._grace == 0:
                    break
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._released:
            try:
                states = await self.queue.release(self._released)
                self.stats["released"] += len(states)
                self.log.info("gave jobs back", jobs=len(states))
            except DB_ERRORS as exc:
                self.log.warning("could not give jobs back; they return when their lease expires", error=str(exc))
        try:
            await asyncio.wait_for(self.reporter.flush(), 5)
        except DB_ERRORS:
            pass

    # --- claiming ------------------------------------------------------------------------

    async def _produce(self, spec: TypeSpec) -> None:
        name = spec.name
        batch_limit = spec.claim_batch or self.settings.claim_batch
        wake = self._wake[name]
        backoff = 0.1
        rotations = 0  # claims in a row that found a full ring of channels but took no job
        while not self._stop.is_set():
            wake.clear()
            free = self.limits[name] - self.busy[name]
            if free > 0:
                want = min(free, batch_limit)
                limited = self._limited.get(name, False)
                try:
                    jobs = await self.queue.claim(
                        name, want, self.worker_id, spec.lease_seconds, cursor=self._cursor[name], limited=limited
                    )
                except DB_ERRORS as exc:
                    self.log.warning("claim failed; backing off", job_type=name, error=str(exc), backoff=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
                self._cursor[name] = jobs.next_cursor
                # A claim that took anything may have left more behind: fair claims take a
                # share per channel, so a short batch is normal with work still queued, and
                # a limited type gets no more than its budget. So claim again while there
                # is room, and when a job ends; only an empty claim waits for a wake-up.
                self._maybe_more[name] = bool(jobs) or limited
                for job in jobs:
                    self._start(spec, job)
                if jobs and not limited and self.busy[name] < self.limits[name]:
                    continue
                # Every channel visited had only delayed jobs: go on round the ring now,
                # a bounded number of times, rather than waiting a poll per ring.
                rotations = rotations + 1 if not jobs and jobs.ring_full else 0
                if 0 < rotations <= 10:
                    continue
            try:
                await asyncio.wait_for(wake.wait(), self.settings.poll_interval)
            except TimeoutError:
                pass

    def _start(self, spec: TypeSpec, job: Any) -> None:
        self.stats["claimed"] += 1
        metrics.job_started(job.type, (job.started_at - job.run_at).total_seconds())
        self.busy[spec.name] += 1
        job_log = self.log.bind(job_id=str(job.id), job_type=job.type, channel_id=job.channel_id, attempt=job.attempts)
        ctx = JobContext(job, self.reporter, job_log)
        running = Running(spec, ctx, time.monotonic() + spec.timeout_seconds)
        self.running[job.id] = running
        running.task = asyncio.create_task(self._run_job(running))

    async def _run_job(self, running: Running) -> None:
        spec, ctx = running.spec, running.ctx
        job = ctx.job
        began = time.monotonic()
        try:
            outcome = await self._execute(running)
            if outcome is None:
                return
            if ctx.has_pending():
                await self.reporter.flush()
            state = await self.completer.submit(outcome)
            if state is None:
                ctx.log.warning("outcome not recorded: the job is no longer held by this worker")
            else:
                self.stats["completed" if state == "completed" else "failed"] += 1
                metrics.job_finished(spec.name, state, time.monotonic() - began)
                ctx.log.debug("job finished", state=state)
        except asyncio.CancelledError:
            self._released.append((job.id, job.attempts))
            raise
        finally:
            self.running.pop(job.id, None)
            self.busy[spec.name] -= 1
            if self._maybe_more[spec.name]:
                self._wake[spec.name].set()

    async def _execute(self, running: Running) -> _Outcome | None:
        spec, ctx = running.spec, running.ctx
        job = ctx.job
        assert spec.handler is not None
        try:
            running.in_handler = True
            try:
                value = await spec.handler(ctx)
            finally:
                running.in_handler = False
        except JobCancelled:
            return _Outcome(failure=Failure(job.id, job.attempts, "Job cancelled by user request", "cancelled"))
        except LeaseLost:
            ctx.log.warning("lease lost: stopped without recording anything")
            return None
        except Suspended:
            ctx.log.debug("job parked itself; it is back in the queue")
            return None
        except PermanentError as exc:
            return _Outcome(failure=Failure(job.id, job.attempts, _describe(exc), "permanent"))
        except asyncio.CancelledError:
            if not running.timed_out:
                raise  # the worker is stopping: the job is given back
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # this cancellation was the timeout's, and it is handled
            return self._failure(spec, ctx, f"timed out after {spec.timeout_seconds}s", "timeout")
        except Exception as exc:  # a handler's failure is the job's, never the worker's
            ctx.log.info("attempt failed", error=_describe(exc))
            return self._failure(spec, ctx, _describe(exc), "error")
        if ctx.lost:
            return None
        path = None
        if isinstance(value, Result):
            value, path = value.data, value.path
        try:
            json_text(value, "result")
        except InvalidJob as exc:
            return _Outcome(failure=Failure(job.id, job.attempts, str(exc), "permanent"))
        return _Outcome(completion=Completion(job.id, job.attempts, value, path))

    async def _enforce_timeouts(self) -> None:
        """Cancel every attempt past its type's timeout. One sweep over the running jobs a
        few times per shortest timeout (at most once a second) instead of an
        asyncio.timeout per job, whose timer handle per attempt was ~14 % of a busy
        worker's CPU (py-spy, `make bench` drain). A timeout fires up to a second late."""
        interval = min(1.0, max(0.05, min(spec.timeout_seconds for spec in self.specs.values()) / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for running in list(self.running.values()):
                if now >= running.deadline and running.in_handler and not running.timed_out and running.task:
                    running.timed_out = True
                    running.task.cancel()

    def _failure(self, spec: TypeSpec, ctx: JobContext, error: str, kind: str) -> _Outcome:
        base = spec.retry_base_seconds if spec.retry_base_seconds is not None else self.settings.retry_base_seconds
        delay = retry_delay(ctx.attempt, base, self.settings.retry_max_seconds)
        return _Outcome(failure=Failure(ctx.id, ctx.attempt, error, kind, delay))

    def lost(self, job_id: uuid.UUID) -> None:
        running = self.running.get(job_id)
        if running and not running.ctx.lost:
            running.ctx.log.warning("lease lost: another worker may run this job now")
            running.ctx.mark_lost()

    # --- heartbeat and notifications -----------------------------------------------------

    async def _refresh_policies(self) -> None:
        """Learn which types have fleet-wide, per-channel or rate limits (set at
        registration): those claim under a per-type lock. Pauses need no refresh: the
        claim itself reads them."""
        policies = await self.queue.policies(list(self.specs))
        self._limited = {
            name: any(p[k] is not None for k in ("global_concurrency", "channel_concurrency", "rate_limit"))
            for name, p in policies.items()
        }

    async def _heartbeat(self) -> None:
        interval = max(0.1, min(spec.lease_seconds for spec in self.specs.values()) / 3)
        beats = 0
        while True:
            await asyncio.sleep(interval)
            beats += 1
            if beats % 10 == 0:
                try:
                    await self._refresh_policies()
                except DB_ERRORS:
                    pass
            held = [(job_id, r.ctx.attempt, r.spec.lease_seconds) for job_id, r in self.running.items()]
            try:
                answer = await self.queue.heartbeat(self.worker_id, held)
            except DB_ERRORS as exc:
                self.log.warning("heartbeat failed", error=str(exc))
                continue
            for job_id, _, _ in held:
                running = self.running.get(job_id)
                if running is None:
                    continue  # finished meanwhile
                if job_id not in answer:
                    self.lost(job_id)
                elif answer[job_id]:
                    running.ctx.request_cancel()

    def _on_notify(self, conn: Any, pid: int, chan: str, payload: str) -> None:
        if chan == self._chan_wake:
            event = self._wake.get(payload)
            if event is not None:
                event.set()
            elif self._probe is not None and payload == self._probe[0] and not self._probe[1].done():
                self._probe[1].set_result(None)
        elif chan == self._chan_cancel:
            try:
                running = self.running.get(uuid.UUID(payload))
            except ValueError:
                return
            if running is not None:
                running.ctx.log.info("cancel requested")
                running.ctx.request_cancel()

    async def _listen(self) -> None:
        """Hold the LISTEN connection; reconnect with backoff when it drops, then wake every
        producer once, since a notification sent during the gap was lost."""
        self._chan_wake = channel(self.settings.schema, "wake")
        self._chan_cancel = channel(self.settings.schema, "cancel")
        metrics.listener_connected("worker", False)
        backoff = 0.1
        while True:
            closed = asyncio.Event()
            try:
                conn = await db.connect(self.settings, application_name="pgcue-worker-listen")
                conn.add_termination_listener(lambda _c, lost=closed: lost.set())
                await conn.add_listener(self._chan_wake, self._on_notify)
                await conn.add_listener(self._chan_cancel, self._on_notify)
            except DB_ERRORS as exc:
                self.log.warning("listener cannot connect", error=str(exc), backoff=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            metrics.listener_connected("worker", True)
            for event in self._wake.values():
                event.set()
            try:
                while not closed.is_set():
                    try:
                        await asyncio.wait_for(closed.wait(), self.settings.listener_probe_interval)
                    except TimeoutError:
                        if not await self._probe_listener():
                            break
                if closed.is_set():
                    self.log.warning("listener connection lost; reconnecting")
            finally:
                metrics.listener_connected("worker", False)
                if not conn.is_closed():
                    conn.terminate()

    async def _probe_listener(self) -> bool:
        """A NOTIFY round trip through the database to our own LISTEN connection. A
        connection can look open and hear nothing (a half-dead TCP link, a proxy that
        dropped it): without an answer in time we drop it and connect again."""
        self._probe_seq += 1
        token = f"probe:{self.worker_id}:{self._probe_seq}"
        heard: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._probe = (token, heard)
        try:
            await self.queue.sql.execute(self.pool, "notify_wake", token)
            await asyncio.wait_for(heard, self.settings.listener_probe_timeout)
            return True
        except DB_ERRORS as exc:
            self.log.warning("listener probe failed; reconnecting", error=str(exc) or type(exc).__name__)
            return False
        finally:
            self._probe = None


def install_signal_handlers(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
