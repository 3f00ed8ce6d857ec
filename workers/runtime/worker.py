"""The worker process: runs one or more job types, each with its own concurrency.

Its components, one per file, are supervised (pgcue.core.components): a producer per type
(producer.py) claims jobs up to the type's free slots, woken by the listener (a `wake`
notification, a `cancel`); the heartbeat (heartbeat.py) extends every held lease and
learns of cancels; the reporter (reporter.py) writes buffered progress and output; the
completer (completer.py) records outcomes in batches; the timeout sweep (timeouts.py)
cancels attempts past their timeout; and, unless told not to, the maintenance leader and
its duties (maintenance/). A component that fails is restarted; one that keeps failing
stops the process with exit status 70, so its own supervisor starts a fresh one.

On SIGTERM the worker stops claiming, lets running jobs finish for the grace period, then
gives the rest back without charging their attempt.

A worker with no job types and maintenance on (`pgcue maintenance`) only leads
maintenance: the one always-on process of a fleet whose workers scale to zero. A worker
with `max_jobs` or `idle_exit` ends by itself (lifetime.py): a pod of a Kubernetes Job
that runs one job and exits.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import time
import uuid
from dataclasses import dataclass

import structlog

from pgcue.core import db, metrics
from pgcue.core.artifacts import LocalArtifacts
from pgcue.core.components import EXIT_COMPONENT_FAILED, Supervisor
from pgcue.core.config import Settings
from pgcue.core.errors import InvalidJob
from pgcue.core.listener import Listener
from pgcue.core.models import ClaimedJob, Completion, Failure
from pgcue.core.queue import Queue, json_text, retry_delay
from pgcue.core.states import FailureKind
from pgcue.workers.runtime import registry
from pgcue.workers.runtime.completer import Completer, Outcome
from pgcue.workers.runtime.context import (
    JobCancelled,
    JobContext,
    LeaseLost,
    PermanentError,
    Result,
    RetryLater,
    Suspended,
)
from pgcue.workers.runtime.heartbeat import Heartbeat
from pgcue.workers.runtime.lifetime import Lifetime
from pgcue.workers.runtime.maintenance.duties import ArtifactSweeper, Pruner, Rescuer, Scheduler
from pgcue.workers.runtime.maintenance.leader import Leader
from pgcue.workers.runtime.producer import Producer
from pgcue.workers.runtime.registry import TypeSpec
from pgcue.workers.runtime.reporter import ProgressReporter
from pgcue.workers.runtime.timeouts import TimeoutSweep

log = structlog.get_logger("pgcue.worker")

HEALTH_STALL_SECONDS = 30.0
# A job claimed ahead that has waited this long for a handler slot (or 20 claim horizons,
# if more) is given back for another process to run.
AHEAD_WAIT_SECONDS = 1.0


@dataclass
class Running:
    spec: TypeSpec
    ctx: JobContext
    deadline: float  # time.monotonic() past which the attempt has timed out
    task: asyncio.Task[None] | None = None
    in_handler: bool = False  # the handler is running (only then may a timeout cancel the task)
    timed_out: bool = False  # set by the timeout sweep just before it cancels the task
    slot_freed: bool = False  # its handler is done and its slot taken by the next job
    started: bool = False  # its handler has a slot (a job claimed ahead waits for one)


def apply_memory_limit(megabytes: int) -> None:
    """Cap this process's address space, the budget of the type it runs. Children
    (ffmpeg, espeak-ng) inherit it."""
    limit = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        settings: Settings,
        specs: list[TypeSpec],
        *,
        concurrency: int | None = None,
        worker_id: str | None = None,
        maintenance: bool = True,
        max_jobs: int | None = None,
        idle_exit: float | None = None,
    ) -> None:
        if not specs and not maintenance:
            raise ValueError("a worker needs at least one job type, or maintenance to lead")
        missing = [s.name for s in specs if s.handler is None]
        if missing:
            raise ValueError(f"no handler registered for job type(s): {', '.join(missing)}")
        self.settings = settings
        self.specs = {s.name: s for s in specs}
        self.limits = {s.name: concurrency or s.concurrency for s in specs}
        self.worker_id = worker_id or new_worker_id()
        self.with_maintenance = maintenance
        self.max_jobs = max_jobs  # claim this many in all, then exit once they are done
        self.idle_exit = idle_exit  # exit after this many seconds with nothing to run
        self.ticked = time.monotonic()  # the timeout sweep's last pass: the loop is alive
        self.running: dict[uuid.UUID, Running] = {}
        self.busy = dict.fromkeys(self.specs, 0)  # claimed and not yet done (started or waiting)
        # Handlers at once: a job claimed ahead (see ahead()) waits here for a slot.
        self.slots = {name: asyncio.Semaphore(limit) for name, limit in self.limits.items()}
        self.in_handler = dict.fromkeys(self.specs, 0)  # handlers running (each holds a slot)
        self.pace: dict[str, float] = {}  # per type, handlers' recent duration, seconds (decaying max)
        self.limited: dict[str, bool] = {}  # types claimed under a fleet-wide lock
        self.producers = {name: Producer(self, spec) for name, spec in self.specs.items()}
        self.store = LocalArtifacts(settings.artifacts_dir)
        self.exit_code = 0
        self._stop = asyncio.Event()
        self._grace = settings.shutdown_grace
        self._released: list[tuple[uuid.UUID, int]] = []
        self.stats = {"claimed": 0, "completed": 0, "failed": 0, "released": 0}
        self.log = log.bind(worker_id=self.worker_id)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def ahead(self, name: str) -> int:
        """Jobs of type `name` to claim beyond the free slots: as many as start within
        claim_ahead_seconds at the pace this type's handlers finish, at most a claim batch.
        0 before a handler has finished, and none for a type claimed under a fleet-wide
        limit, whose budget counts every held job as running. So long jobs are claimed one
        free slot at a time, as before, and a worker never holds more work than it starts
        within the horizon while other processes could run it."""
        horizon = self.settings.claim_ahead_seconds
        pace = self.pace.get(name)
        if horizon <= 0 or pace is None or self.limited.get(name, False):
            return 0
        starts_per_second = self.limits[name] / max(pace, 1e-4)
        return min(self.batch_limit(name), int(starts_per_second * horizon))

    def batch_limit(self, name: str) -> int:
        return self.specs[name].claim_batch or self.settings.claim_batch

    def room(self, name: str) -> int:
        """Jobs of type `name` this process may claim now: its free slots and what it may
        claim ahead (ahead()), within what is left of max_jobs."""
        free = self.limits[name] + self.ahead(name) - self.busy[name]
        if self.max_jobs is not None:
            free = min(free, self.max_jobs - self.stats["claimed"])
        return free

    def health(self) -> tuple[bool, str]:
        """Alive when the event loop has run the timeout sweep lately (the metrics port's
        /healthz: a liveness probe restarts a worker whose loop is stuck)."""
        lag = time.monotonic() - self.ticked
        if lag > HEALTH_STALL_SECONDS:
            return False, f"the event loop has not run for {lag:.0f}s"
        return True, "stopping" if self.stopping else "ok"

    # --- life --------------------------------------------------------------------------

    def request_stop(self, grace: float | None = None) -> None:
        """Stop claiming; finish running jobs within `grace` seconds, then give them back."""
        if self._stop.is_set():
            self._grace = 0.0  # a second signal: stop now
        elif grace is not None:
            self._grace = grace
        self._stop.set()

    def _fatal(self, name: str, exc: BaseException) -> None:
        self.exit_code = EXIT_COMPONENT_FAILED
        self.request_stop(grace=min(self._grace, 5.0))

    async def run(self) -> int:
        """Work until stopped; returns the process's exit status."""
        s = self.settings
        size = max(4, len(self.specs) + 3)
        self.pool = await db.create_pool(s, min_size=1, max_size=size, application_name="pgcue-worker")
        self.queue = Queue(self.pool, s.schema)
        self.reporter = ProgressReporter(self, s.report_interval)
        self.completer = Completer(self.queue)
        await self.queue.register_types([spec.row() for spec in self.specs.values()])
        await self.queue.upkeep.register_schedules(registry.all_schedules())
        await self.queue.fleet.register_worker(
            self.worker_id, socket.gethostname(), os.getpid(), list(self.specs), sum(self.limits.values())
        )
        await self.refresh_policies()
        supervisor = Supervisor(self._fatal, logger=self.log)
        listener = Listener(
            s,
            self.queue.fleet.notify,
            {s.channel("wake"): self._on_wake, s.channel("cancel"): self._on_cancel},
            component="worker",
            application_name="pgcue-worker-listen",
            on_connect=self._wake_all,  # a notification sent while we were not listening was lost
        )
        for component in (listener, Heartbeat(self), self.reporter, self.completer, TimeoutSweep(self)):
            supervisor.start(component)
        if self.max_jobs is not None or self.idle_exit is not None:
            supervisor.start(Lifetime(self))
        if self.with_maintenance:
            direct = (lambda: db.connect(s, application_name="pgcue-leader")) if s.pooled else None
            leader = Leader(self.queue, s.rescue_interval, direct)
            supervisor.start(leader)
            supervisor.start(Rescuer(self.queue, leader, s.rescue_interval))
            supervisor.start(Scheduler(self.queue, leader, min(1.0, s.rescue_interval)))
            supervisor.start(Pruner(self.queue, leader, s.prune_interval, s.retention_seconds))
            supervisor.start(ArtifactSweeper(self.queue, leader, s.artifact_sweep_interval, self.store))
        for producer in self.producers.values():
            supervisor.start(producer)
        self.log.info(
            "worker started",
            types=sorted(self.specs),
            concurrency=self.limits,
            # What it holds (docs/deploy.md): a pool for claims, outcomes, progress and
            # heartbeats (idle ones close after 15 s), one LISTEN session, and, while it
            # leads behind a pooler, the leader's session.
            connections={"pool": f"1-{size}", "listen": 1, "leader": int(self.with_maintenance and s.pooled)},
        )
        try:
            await self._stop.wait()
        finally:
            await supervisor.stop(*(p.name for p in self.producers.values()))
            await self._drain()
            await supervisor.stop()
            try:
                await self.queue.fleet.stop_worker(self.worker_id)
            except Exception as exc:
                if not db.unavailable(exc):
                    raise
            await self.pool.close()
            self.log.info("worker stopped", exit_code=self.exit_code, **self.stats)
        return self.exit_code

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
            except Exception as exc:
                if not db.unavailable(exc):
                    raise
                self.log.warning("could not give jobs back; they return when their lease expires", error=str(exc))
        try:
            await asyncio.wait_for(self.reporter.flush(), 5)
        except Exception as exc:
            if not (db.unavailable(exc) or isinstance(exc, TimeoutError)):
                raise

    # --- running jobs --------------------------------------------------------------------

    def start_job(self, spec: TypeSpec, job: ClaimedJob) -> None:
        self.stats["claimed"] += 1
        metrics.job_started(job.type, ((job.claimed_at or job.started_at) - job.run_at).total_seconds())
        self.busy[spec.name] += 1
        job_log = self.log.bind(job_id=str(job.id), job_type=job.type, channel_id=job.channel_id, attempt=job.attempts)
        ctx = JobContext(
            job, self.reporter, job_log, queue=self.queue, store=self.store, quota=self.settings.artifact_quota_bytes
        )
        running = Running(spec, ctx, deadline=float("inf"))  # its timeout runs from its handler's start
        self.running[job.id] = running
        running.task = asyncio.create_task(self._run_job(running))

    async def _run_job(self, running: Running) -> None:
        spec, ctx = running.spec, running.ctx
        job = ctx.job
        began = time.monotonic()
        try:
            slot = self.slots[spec.name]
            if not await self._take_slot(running, slot):
                return
            try:
                if self.stopping:  # claimed ahead and never started: given back, attempt uncharged
                    self._released.append((job.id, job.fence))
                    return
                if ctx.lost:  # rescued while it waited: another worker holds it now
                    return
                running.started = True
                self.in_handler[spec.name] += 1
                started = time.monotonic()
                running.deadline = started + spec.timeout_seconds
                outcome = await self._execute(running)
                self._paced(spec.name, time.monotonic() - started)
            finally:
                if running.started:
                    self.in_handler[spec.name] -= 1
                slot.release()
            if outcome is None:
                return
            # The handler is done: its slot may take the next job while the outcome is
            # written, so claims overlap completions instead of waiting for them. The job
            # stays held (heartbeats go on) until the outcome is recorded; at most a
            # concurrency's worth of outcomes wait at once, so a slow database slows the
            # claims down instead of letting held jobs pile up.
            if self.completer.waiting < self.limits[spec.name]:
                self._free_slot(running)
            await self.reporter.settle(ctx)  # its output first: after the outcome it would be refused
            state = await self.completer.submit(outcome)
            if state is None:
                ctx.log.warning("outcome not recorded: the job is no longer held by this worker")
            else:
                self.stats["completed" if state == "completed" else "failed"] += 1
                metrics.job_finished(spec.name, state, time.monotonic() - began)
                ctx.log.debug("job finished", state=state)
        except asyncio.CancelledError:
            self._released.append((job.id, job.fence))
            raise
        except Exception as exc:  # a bug past the handler: never a silent, stuck job
            ctx.log.exception("recording the job's outcome failed; giving it back", error=_describe(exc))
            try:
                await self.queue.release([(job.id, job.fence)], reason="recording the outcome failed")
            except Exception as again:
                ctx.log.warning("could not give the job back; it returns when its lease expires", error=str(again))
        finally:
            self.running.pop(job.id, None)
            self._free_slot(running)

    def give_back(self, held: list[tuple[uuid.UUID, int]]) -> None:
        """Jobs (id, fence) this process holds but will not run: released as it stops."""
        self._released.extend(held)

    async def _take_slot(self, running: Running, slot: asyncio.Semaphore) -> bool:
        """Wait for a handler slot. A job claimed ahead that has waited longer than
        AHEAD_WAIT_SECONDS (the type's handlers turned out slower than their pace said) is given
        back at once, attempt uncharged, so another process can run it; False then."""
        if not slot.locked():
            await slot.acquire()
            return True
        wait = max(AHEAD_WAIT_SECONDS, 20 * self.settings.claim_ahead_seconds)
        # Not wait_for: its cancellation could lose a slot granted as the time ran out.
        acquire = asyncio.ensure_future(slot.acquire())
        try:
            await asyncio.wait({acquire}, timeout=wait)
        except asyncio.CancelledError:
            if not acquire.cancel() and not acquire.exception():
                slot.release()  # granted just as this task was cancelled
            raise
        if not acquire.done():
            acquire.cancel()
            await asyncio.wait({acquire})
        if not acquire.cancelled():
            return True  # granted, if only just
        job, name = running.ctx.job, running.spec.name
        self._paced(name, wait)  # no more claiming ahead until handlers finish faster again
        try:
            await self.queue.release([(job.id, job.fence)], reason="claimed ahead; no free slot in time")
        except Exception as exc:
            if not db.unavailable(exc):
                raise
            running.ctx.log.warning("could not give the job back; it returns when its lease expires", error=str(exc))
        self.stats["released"] += 1
        return False

    def _paced(self, name: str, took: float) -> None:
        """Record a handler's duration. The pace is a decaying maximum, so one slow job
        stops claiming ahead at once and many fast ones are needed to start it again."""
        pace = self.pace.get(name)
        self.pace[name] = took if pace is None else max(took, 0.9 * pace)

    def _free_slot(self, running: Running) -> None:
        if running.slot_freed:
            return
        running.slot_freed = True
        name = running.spec.name
        self.busy[name] -= 1
        producer = self.producers[name]
        if producer.maybe_more:
            producer.wake.set()

    async def _execute(self, running: Running) -> Outcome | None:
        spec, ctx = running.spec, running.ctx
        job = ctx.job
        assert spec.handler is not None
        try:
            running.in_handler = True
            try:
                value = await spec.handler(ctx)
            finally:
                running.in_handler = False
        except JobCancelled as exc:
            reason = exc.reason or "Job cancelled by user request"
            return Outcome(failure=Failure(job.id, job.fence, reason, FailureKind.CANCELLED))
        except LeaseLost:
            ctx.log.warning("lease lost: stopped without recording anything")
            return None
        except Suspended:
            ctx.log.debug("job parked itself; it is back in the queue")
            return None
        except PermanentError as exc:
            return Outcome(failure=Failure(job.id, job.fence, _describe(exc), FailureKind.PERMANENT))
        except asyncio.CancelledError:
            if not running.timed_out:
                raise  # the worker is stopping: the job is given back
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # this cancellation was the timeout's, and it is handled
            return self._failure(spec, ctx, f"timed out after {spec.timeout_seconds}s", FailureKind.TIMEOUT)
        except Exception as exc:  # a handler's failure is the job's, never the worker's
            ctx.log.info("attempt failed", error=_describe(exc))
            floor = exc.after if isinstance(exc, RetryLater) else 0.0
            return self._failure(spec, ctx, _describe(exc), FailureKind.ERROR, at_least=floor)
        if ctx.lost:
            return None
        path = None
        if isinstance(value, Result):
            value, path = value.data, value.path
        try:
            json_text(value, "result")
            if path is not None and (
                not isinstance(path, str) or "\x00" in path or len(path) > 1000 or not _utf8(path)
            ):
                raise InvalidJob("resultPath must be text of at most 1000 characters, without NUL or invalid Unicode")
        except InvalidJob as exc:
            return Outcome(failure=Failure(job.id, job.fence, str(exc), FailureKind.PERMANENT))
        return Outcome(completion=Completion(job.id, job.fence, value, path))

    def _failure(
        self, spec: TypeSpec, ctx: JobContext, error: str, kind: FailureKind, at_least: float = 0.0
    ) -> Outcome:
        base = spec.retry_base_seconds if spec.retry_base_seconds is not None else self.settings.retry_base_seconds
        delay = max(retry_delay(ctx.attempt, base, self.settings.retry_max_seconds), at_least)
        return Outcome(failure=Failure(ctx.id, ctx.fence, error, kind, delay))

    def lost(self, job_id: uuid.UUID) -> None:
        running = self.running.get(job_id)
        if running and not running.ctx.lost:
            running.ctx.log.warning("lease lost: another worker may run this job now")
            running.ctx.mark_lost()

    async def refresh_policies(self) -> None:
        """Learn which types have fleet-wide, per-channel or rate limits (set at
        registration): those claim under a per-type lock."""
        self.limited = await self.queue.fleet.limited_types(list(self.specs))

    # --- notifications -----------------------------------------------------------------

    def _wake_all(self) -> None:
        for producer in self.producers.values():
            producer.wake.set()

    def _on_wake(self, _channel: str, payload: str) -> None:
        producer = self.producers.get(payload)
        if producer is not None:
            producer.wake.set()

    def _on_cancel(self, _channel: str, payload: str) -> None:
        try:
            running = self.running.get(uuid.UUID(payload))
        except ValueError:
            return
        if running is not None:
            running.ctx.log.info("cancel requested")
            running.ctx.request_cancel()


def install_signal_handlers(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if text and getattr(exc, "plain", False):  # a message meant for the user as it is
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
